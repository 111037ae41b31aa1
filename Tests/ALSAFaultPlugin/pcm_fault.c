/*
 * A capture PCM for fault-injection tests: an ALSA ioplug plugin that plays a raw audio file into the application
 * in real time, as a microphone would, and injects device faults on a schedule. Not part of htsatd; the tests compile
 * it (cc -shared -fPIC pcm_fault.c -lasound) and load it through a private asound.conf:
 *
 *   pcm_type.fault { lib "/tmp/.../libasound_module_pcm_fault.so" }
 *   pcm.faulty {
 *       type fault
 *       file "/tmp/.../stream.raw"   # interleaved frames in `format`
 *       format "FLOAT_LE"            # any fixed-size linear format
 *       rate 32000
 *       channels 1
 *       state "/tmp/.../fault.state" # survives close and reopen; the tests read it
 *       faults "xrun@12:0.3,suspend@15:1,short@18:2,unplug@33:1.5,stall@38:3"
 *   }
 *
 * Times are stream seconds, counted from the first start (wall clock, CLOCK_MONOTONIC). Like a real device, the
 * file frame captured at wall time t is frame (t - first start) * rate: whatever the device does not capture
 * (while faulted, closed or reopening) is lost, never delivered late. `kind@at:seconds`:
 *   xrun     captures nothing for `seconds`, then reports an overrun (-EPIPE) until prepared;
 *   suspend  captures nothing for `seconds` (the system sleeps), then is SUSPENDED (-ESTRPIPE) until resumed;
 *   unplug   is DISCONNECTED (-ENODEV) at once, and snd_pcm_open fails with -ENODEV for `seconds`;
 *   short    wakes the application every quarter period for `seconds`, so its reads return fewer frames than asked;
 *   stall    captures nothing and never wakes the application for `seconds`, then carries on without an error.
 * A reader that falls a whole buffer behind gets a real overrun too (counted as natural_xrun).
 *
 * The device's clock is a one-shot timerfd, armed for the moment the next period (or fault, or fault end) is due:
 * the poll descriptor behaves like a sound card's, silent while the device delivers nothing.
 */
/* A shared module: alsa-lib's headers then declare the dlsym version symbol it looks for. */
#ifndef PIC
#define PIC
#endif
#include <alsa/asoundlib.h>
#include <alsa/pcm_external.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

enum { XRUN, SUSPEND, UNPLUG, SHORT, STALL, KINDS };
static const char *const kind_names[KINDS] = { "xrun", "suspend", "unplug", "short", "stall" };
#define MAX_FAULTS 64

struct fault { int kind; double at, seconds; };

/* What outlives one open: in the state file. */
struct persist {
	long long epoch_mono, epoch_real;  /* first start, ns: stream second 0 */
	long long unplugged_until;         /* snd_pcm_open fails before this (monotonic ns) */
	long long delivered;               /* frames handed to applications, all opens together */
	long long next;                    /* first fault not yet applied */
	long long opens, natural_xruns, short_reads;
	long long count[KINDS];            /* faults applied, by kind */
};

typedef struct {
	snd_pcm_ioplug_t io;
	int file_fd, timer_fd;
	char *state_path;
	unsigned int rate, channels, frame_bytes;
	snd_pcm_format_t format;
	struct fault faults[MAX_FAULTS];
	int nfaults;
	struct persist p;
	unsigned char *ring;                /* the "DMA buffer", buffer_size frames */
	unsigned long long hw, appl;        /* frames captured / handed out since prepare */
	int running, capturing;
	long long run_origin;               /* capture (re)started at this time, with frame run_hw = file frame run_file */
	unsigned long long run_hw;
	long long run_file;
	int quiet;                          /* the fault whose silent phase lasts until quiet_until, or -1 */
	long long quiet_until, short_until;
} fault_t;

static long long clock_ns(clockid_t id)
{
	struct timespec ts;
	clock_gettime(id, &ts);
	return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static long long now_ns(void) { return clock_ns(CLOCK_MONOTONIC); }

/* ---- state file: "key value" lines ---- */

#define FIELDS(X) X(epoch_mono) X(epoch_real) X(unplugged_until) X(delivered) X(next) X(opens) X(natural_xruns) X(short_reads)

static void save_state(fault_t *f)
{
	char tmp[4096];
	FILE *out;
	int k;

	if (!f->state_path)
		return;
	snprintf(tmp, sizeof tmp, "%s.tmp", f->state_path);
	out = fopen(tmp, "w");
	if (!out)
		return;
#define PRINT(name) fprintf(out, #name " %lld\n", f->p.name);
	FIELDS(PRINT)
	for (k = 0; k < KINDS; k++)
		fprintf(out, "%s %lld\n", kind_names[k], f->p.count[k]);
	/* Wall time since the first start that no delivered frame stands for: what the application lost. */
	if (f->p.epoch_mono)
		fprintf(out, "lost_seconds %.6f\n", (now_ns() - f->p.epoch_mono) / 1e9 - (double)f->p.delivered / f->rate);
	fclose(out);
	rename(tmp, f->state_path);
}

static void load_state(fault_t *f)
{
	char key[64];
	long long value;
	FILE *in;
	int k;

	if (!f->state_path || !(in = fopen(f->state_path, "r")))
		return;
	while (fscanf(in, "%63s %lld%*[^\n]", key, &value) == 2) {
#define SCAN(name) if (!strcmp(key, #name)) f->p.name = value;
		FIELDS(SCAN)
		for (k = 0; k < KINDS; k++)
			if (!strcmp(key, kind_names[k]))
				f->p.count[k] = value;
	}
	fclose(in);
}

/* ---- the device ---- */

/* Reads file frames [frame, frame + n) into dst; silence past the end. */
static void read_file(fault_t *f, unsigned char *dst, long long frame, unsigned long long n)
{
	size_t want = n * f->frame_bytes, got = 0;
	ssize_t r;

	while (got < want) {
		r = pread(f->file_fd, dst + got, want - got, frame * f->frame_bytes + got);
		if (r <= 0)
			break;
		got += r;
	}
	snd_pcm_format_set_silence(f->format, dst + got, (want - got) * 8 / snd_pcm_format_physical_width(f->format));
}

/* Captures into the ring everything due by time t; a reader a whole buffer behind makes an overrun. */
static void capture_to(fault_t *f, long long t)
{
	unsigned long long target, pos, n, size = f->io.buffer_size;
	int overrun = 0;

	if (!f->capturing || t <= f->run_origin)
		return;
	target = f->run_hw + (unsigned long long)((t - f->run_origin) * (long long)f->rate / 1000000000LL);
	if (target - f->appl >= size) {
		target = f->appl + size;
		overrun = 1;
	}
	while (f->hw < target) {
		pos = f->hw % size;
		n = target - f->hw < size - pos ? target - f->hw : size - pos;
		read_file(f, f->ring + pos * f->frame_bytes, f->run_file + (long long)(f->hw - f->run_hw), n);
		f->hw += n;
	}
	if (overrun) {
		f->capturing = 0;
		f->io.state = SND_PCM_STATE_XRUN;
		f->p.natural_xruns++;
	}
}

/* (Re)starts capture at time t, at the file frame the wall clock says. */
static void start_capture(fault_t *f, long long t)
{
	f->capturing = 1;
	f->run_origin = t;
	f->run_hw = f->hw;
	f->run_file = (t - f->p.epoch_mono) * (long long)f->rate / 1000000000LL;
}

static void stop_capture(fault_t *f, long long t)
{
	capture_to(f, t);
	f->capturing = 0;
}

static long long fault_time(fault_t *f, int i) { return f->p.epoch_mono + (long long)(f->faults[i].at * 1e9); }

/* Brings the device up to now: captures, and applies the faults that fell due, in order. */
static void update(fault_t *f)
{
	long long now = now_ns(), t, end;
	struct fault *x;

	for (;;) {
		if (f->quiet >= 0 && now >= f->quiet_until) {
			int kind = f->quiet;
			f->quiet = -1;
			if (kind == STALL)
				start_capture(f, f->quiet_until);
			else
				f->io.state = kind == XRUN ? SND_PCM_STATE_XRUN : SND_PCM_STATE_SUSPENDED;
			continue;
		}
		if (f->io.state != SND_PCM_STATE_RUNNING || f->quiet >= 0 || f->p.next >= f->nfaults)
			break;
		t = fault_time(f, f->p.next);
		if (t > now)
			break;
		x = &f->faults[f->p.next++];
		f->p.count[x->kind]++;
		end = t + (long long)(x->seconds * 1e9);
		switch (x->kind) {
		case SHORT:
			f->short_until = end;
			break;
		case UNPLUG:
			stop_capture(f, t);
			f->p.unplugged_until = end;
			f->io.state = SND_PCM_STATE_DISCONNECTED;
			break;
		default:
			stop_capture(f, t);
			f->quiet = x->kind;
			f->quiet_until = end;
			break;
		}
		save_state(f);
	}
	capture_to(f, now);
}

/* Frames that make the device readable: a period, or a quarter of one during a `short` fault. */
static unsigned long long threshold(fault_t *f, long long now)
{
	unsigned long long period = f->io.period_size;
	return now < f->short_until && period >= 4 ? period / 4 : period;
}

static int faulted(fault_t *f)
{
	return f->io.state == SND_PCM_STATE_XRUN || f->io.state == SND_PCM_STATE_SUSPENDED ||
	       f->io.state == SND_PCM_STATE_DISCONNECTED;
}

/* Arms the timerfd for the next moment the application has something to do. */
static void arm(fault_t *f)
{
	long long now = now_ns(), when = 0;
	struct itimerspec its;

	if (faulted(f)) {
		when = now;
	} else if (f->running) {
		if (f->quiet >= 0) {
			when = f->quiet_until;
		} else {
			unsigned long long need = f->appl + threshold(f, now);
			when = need <= f->hw ? now
				: f->run_origin + (long long)((need - f->run_hw) * 1000000000ULL + f->rate - 1) / f->rate;
			if (now < f->short_until && f->short_until < when)
				when = f->short_until;
		}
		if (f->p.next < f->nfaults && fault_time(f, f->p.next) < when)
			when = fault_time(f, f->p.next);
	}
	memset(&its, 0, sizeof its);
	if (when > 0) {  /* an absolute time already past fires at once */
		its.it_value.tv_sec = when / 1000000000LL;
		its.it_value.tv_nsec = when % 1000000000LL;
	}
	timerfd_settime(f->timer_fd, TFD_TIMER_ABSTIME, &its, NULL);
}

/* ---- ioplug callbacks ---- */

static int fault_start(snd_pcm_ioplug_t *io)
{
	fault_t *f = io->private_data;
	long long now = now_ns();

	if (!f->p.epoch_mono) {
		f->p.epoch_mono = now;
		f->p.epoch_real = clock_ns(CLOCK_REALTIME);
	}
	f->running = 1;
	f->quiet = -1;
	start_capture(f, now);
	save_state(f);
	arm(f);
	return 0;
}

static int fault_stop(snd_pcm_ioplug_t *io)
{
	fault_t *f = io->private_data;

	stop_capture(f, now_ns());
	f->running = 0;
	arm(f);
	return 0;
}

static snd_pcm_sframes_t fault_pointer(snd_pcm_ioplug_t *io)
{
	fault_t *f = io->private_data;

	update(f);
	if (io->state == SND_PCM_STATE_XRUN)
		return -EPIPE;
	return f->hw % io->buffer_size;
}

static snd_pcm_sframes_t fault_transfer(snd_pcm_ioplug_t *io, const snd_pcm_channel_area_t *areas,
					snd_pcm_uframes_t offset, snd_pcm_uframes_t size)
{
	fault_t *f = io->private_data;
	unsigned char *dst = (unsigned char *)areas[0].addr + (areas[0].first + areas[0].step * offset) / 8;
	unsigned long long done = 0, pos, n;

	while (done < size) {  /* interleaved: channel 0's area holds whole frames */
		pos = f->appl % io->buffer_size;
		n = size - done < io->buffer_size - pos ? size - done : io->buffer_size - pos;
		memcpy(dst + done * f->frame_bytes, f->ring + pos * f->frame_bytes, n * f->frame_bytes);
		done += n;
		f->appl += n;
	}
	f->p.delivered += size;
	if (size < io->period_size)
		f->p.short_reads++;
	arm(f);
	return size;
}

static int fault_prepare(snd_pcm_ioplug_t *io)
{
	fault_t *f = io->private_data;

	/* Whatever the ring still held is dropped, as by a real prepare. */
	f->hw = f->appl = 0;
	f->running = f->capturing = 0;
	f->quiet = -1;
	arm(f);
	return 0;
}

static int fault_resume(snd_pcm_ioplug_t *io)
{
	fault_t *f = io->private_data;

	/* Like a driver with SNDRV_PCM_INFO_RESUME: running again, at the wall-clock position. */
	if (io->state == SND_PCM_STATE_SUSPENDED) {
		start_capture(f, now_ns());
		io->state = SND_PCM_STATE_RUNNING;
	}
	arm(f);
	return 0;
}

static int fault_hw_params(snd_pcm_ioplug_t *io, snd_pcm_hw_params_t *params)
{
	fault_t *f = io->private_data;
	(void)params;

	free(f->ring);
	f->ring = calloc(io->buffer_size, f->frame_bytes);
	return f->ring ? 0 : -ENOMEM;
}

static int fault_poll_revents(snd_pcm_ioplug_t *io, struct pollfd *pfd, unsigned int nfds, unsigned short *revents)
{
	fault_t *f = io->private_data;
	unsigned long long ticks;
	(void)pfd;
	(void)nfds;

	if (read(f->timer_fd, &ticks, sizeof ticks) < 0) { /* not expired: nothing to clear */ }
	update(f);
	if (faulted(f))
		*revents = POLLIN | POLLERR;
	else if (io->state == SND_PCM_STATE_RUNNING && f->hw - f->appl >= threshold(f, now_ns()))
		*revents = POLLIN;
	else
		*revents = 0;
	arm(f);
	return 0;
}

static int fault_close(snd_pcm_ioplug_t *io)
{
	fault_t *f = io->private_data;

	save_state(f);
	close(f->file_fd);
	close(f->timer_fd);
	free(f->ring);
	free(f->state_path);
	free(f);
	return 0;
}

static const snd_pcm_ioplug_callback_t fault_callbacks = {
	.start = fault_start,
	.stop = fault_stop,
	.pointer = fault_pointer,
	.transfer = fault_transfer,
	.prepare = fault_prepare,
	.resume = fault_resume,
	.hw_params = fault_hw_params,
	.poll_revents = fault_poll_revents,
	.close = fault_close,
};

static int by_time(const void *a, const void *b)
{
	double x = ((const struct fault *)a)->at, y = ((const struct fault *)b)->at;
	return (x > y) - (x < y);
}

/* "kind@at[:seconds],..." */
static int parse_faults(fault_t *f, const char *text)
{
	char *copy = strdup(text), *save = NULL, *item, *rest;
	int k, err = 0;

	for (item = strtok_r(copy, ",", &save); item && !err; item = strtok_r(NULL, ",", &save)) {
		struct fault *x = &f->faults[f->nfaults];
		char *at = strchr(item, '@');
		if (!at || f->nfaults == MAX_FAULTS) {
			err = -EINVAL;
			break;
		}
		*at++ = 0;
		x->kind = -1;
		for (k = 0; k < KINDS; k++)
			if (!strcmp(item, kind_names[k]))
				x->kind = k;
		x->at = strtod(at, &rest);
		x->seconds = *rest == ':' ? strtod(rest + 1, &rest) : 0;
		if (x->kind < 0 || *rest)
			err = -EINVAL;
		f->nfaults++;
	}
	free(copy);
	if (err)
		SNDERR("fault: bad faults \"%s\": want kind@seconds[:seconds],... with kind xrun, suspend, unplug, short or stall", text);
	qsort(f->faults, f->nfaults, sizeof f->faults[0], by_time);
	return err;
}

SND_PCM_PLUGIN_DEFINE_FUNC(fault)
{
	snd_config_iterator_t i, next;
	const char *file = NULL, *state = NULL, *faults = "", *format = "FLOAT_LE";
	long rate = 32000, channels = 1;
	fault_t *f;
	int err;
	(void)root;

	snd_config_for_each(i, next, conf) {
		snd_config_t *n = snd_config_iterator_entry(i);
		const char *id;
		if (snd_config_get_id(n, &id) < 0)
			continue;
		if (!strcmp(id, "comment") || !strcmp(id, "type") || !strcmp(id, "hint"))
			continue;
		if (!strcmp(id, "file"))
			err = snd_config_get_string(n, &file);
		else if (!strcmp(id, "state"))
			err = snd_config_get_string(n, &state);
		else if (!strcmp(id, "faults"))
			err = snd_config_get_string(n, &faults);
		else if (!strcmp(id, "format"))
			err = snd_config_get_string(n, &format);
		else if (!strcmp(id, "rate"))
			err = snd_config_get_integer(n, &rate);
		else if (!strcmp(id, "channels"))
			err = snd_config_get_integer(n, &channels);
		else
			err = -EINVAL;
		if (err < 0) {
			SNDERR("fault: bad or unknown field %s", id);
			return -EINVAL;
		}
	}
	if (!file || stream != SND_PCM_STREAM_CAPTURE || rate <= 0 || channels <= 0) {
		SNDERR("fault: a capture PCM with a file, a rate and channels");
		return -EINVAL;
	}

	f = calloc(1, sizeof *f);
	if (!f)
		return -ENOMEM;
	f->quiet = -1;
	f->timer_fd = -1;
	f->rate = rate;
	f->channels = channels;
	f->format = snd_pcm_format_value(format);
	f->state_path = state ? strdup(state) : NULL;
	err = snd_pcm_format_physical_width(f->format);
	if (f->format == SND_PCM_FORMAT_UNKNOWN || err <= 0 || err % 8) {
		SNDERR("fault: unsupported format %s", format);
		err = -EINVAL;
		goto fail;
	}
	f->frame_bytes = err / 8 * f->channels;
	if ((err = parse_faults(f, faults)) < 0)
		goto fail;
	load_state(f);
	if (now_ns() < f->p.unplugged_until) {  /* still unplugged */
		err = -ENODEV;
		goto fail;
	}
	f->p.opens++;
	f->file_fd = open(file, O_RDONLY | O_CLOEXEC);
	if (f->file_fd < 0) {
		err = -errno;
		SNDERR("fault: cannot open %s", file);
		goto fail;
	}
	f->timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	if (f->timer_fd < 0) {
		err = -errno;
		close(f->file_fd);
		goto fail;
	}

	f->io.version = SND_PCM_IOPLUG_VERSION;
	f->io.name = "htsatd fault injection";
	f->io.callback = &fault_callbacks;
	f->io.private_data = f;
	f->io.poll_fd = f->timer_fd;
	f->io.poll_events = POLLIN;
	f->io.flags = SND_PCM_IOPLUG_FLAG_MONOTONIC;
	if ((err = snd_pcm_ioplug_create(&f->io, name, stream, mode)) < 0) {
		close(f->file_fd);
		close(f->timer_fd);
		goto fail;
	}
	{
		unsigned int access = SND_PCM_ACCESS_RW_INTERLEAVED, fmt = f->format;
		if ((err = snd_pcm_ioplug_set_param_list(&f->io, SND_PCM_IOPLUG_HW_ACCESS, 1, &access)) < 0 ||
		    (err = snd_pcm_ioplug_set_param_list(&f->io, SND_PCM_IOPLUG_HW_FORMAT, 1, &fmt)) < 0 ||
		    (err = snd_pcm_ioplug_set_param_minmax(&f->io, SND_PCM_IOPLUG_HW_CHANNELS, f->channels, f->channels)) < 0 ||
		    (err = snd_pcm_ioplug_set_param_minmax(&f->io, SND_PCM_IOPLUG_HW_RATE, f->rate, f->rate)) < 0 ||
		    (err = snd_pcm_ioplug_set_param_minmax(&f->io, SND_PCM_IOPLUG_HW_PERIOD_BYTES, 16 * f->frame_bytes, 1 << 20)) < 0 ||
		    (err = snd_pcm_ioplug_set_param_minmax(&f->io, SND_PCM_IOPLUG_HW_PERIODS, 2, 64)) < 0 ||
		    (err = snd_pcm_ioplug_set_param_minmax(&f->io, SND_PCM_IOPLUG_HW_BUFFER_BYTES, 32 * f->frame_bytes, 1 << 22)) < 0) {
			snd_pcm_ioplug_delete(&f->io);  /* closes: fault_close frees f */
			return err;
		}
	}
	save_state(f);
	*pcmp = f->io.pcm;
	return 0;

fail:
	free(f->state_path);
	free(f);
	return err;
}

SND_PCM_PLUGIN_SYMBOL(fault);
