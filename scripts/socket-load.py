#!/usr/bin/env python3
"""Socket load: a live htsatd with 100 event-socket clients for DURATION seconds.

    scripts/socket-load.py [DURATION=600]      # the issue's run: 10 min
    scripts/socket-load.py 30                  # the CI version (SocketLoadTests)

The daemon captures a stream made from the fixture (a dog bark, 2.5 s, then 3.5 s of background, repeated) through
ALSA's `file` plugin, paced to real time (as scripts/soak.sh does), with the fixture detector, every AudioSet label as
an event at a 0.01 threshold, hop 0.25 s and settle 1 s: each bark starts and stops some 500 events, so about 7700
lines (1.4 MB) a minute flow, in bursts of up to 90 kB. Clients: 85 read everything; 10 connect and never read (each
reconnects once the daemon drops it); 5 connect and disconnect in a loop (closing at once, after the replayed status
line, or after shutting down their write side). Checks, with figures printed:
  - capture was never blocked: overruns, capture gaps and skipped windows are 0 (the --metrics-file);
  - every reader got byte-identical lines: each reader's lines after its replay are the tail of the first reader's;
  - the stalled clients were dropped at the backlog bound: the server closed each of them, with the log's reason
    naming the bound and at least the bound's worth still queued for it (what it had received, the kernel socket
    buffer's worth, is a byte-exact prefix of the stream);
  - the churning clients saw no error, and each replay started with the status line;
  - at shutdown, lines are left unsent (after the socket's 2-s drain) only to the stalled clients.
Needs a release build (HTSATD, default .build/release/htsatd) and the fixtures (HTSATD_FIXTURES, default
../shared/fixtures). HTSATD_BACKLOG sets outputs.max_client_backlog (default 262144, the daemon's). Exit status 0 when all
hold.
"""
import array, hashlib, json, os, random, re, select, signal, socket, statistics, subprocess, sys, tempfile, threading, time, wave

READERS, STALLED, CHURNERS = 85, 10, 5

root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
duration = float(sys.argv[1]) if len(sys.argv) > 1 else 600
binary = os.environ.get("HTSATD", os.path.join(root, ".build/release/htsatd"))
fixtures = os.environ.get("HTSATD_FIXTURES", os.path.join(root, "../shared/fixtures"))
bound = int(os.environ.get("HTSATD_BACKLOG", "262144"))
work = tempfile.mkdtemp(prefix="htsatd-socket-load.")
sock_path, prom, log_path = (os.path.join(work, n) for n in ("events.sock", "htsatd.prom", "stderr.log"))
failures = []


def check(ok, what):
    print(("ok:   " if ok else "FAIL: ") + what)
    if not ok:
        failures.append(what)


def digest(line):
    return hashlib.blake2b(line, digest_size=16).digest()


# The stream, for the whole run, as raw float32 for the `file` plugin; every AudioSet label as an event.
w = wave.open(os.path.join(fixtures, "detector/streams/dog_siren_32k.wav"))
assert w.getsampwidth() == 2 and w.getnchannels() == 1 and w.getframerate() == 32000, "need 16-bit mono 32 kHz"
stream = array.array("f", (x / 32768.0 for x in array.array("h", w.readframes(w.getnframes()))))
one = (stream[8 * 32000:int(10.5 * 32000)] + stream[:int(3.5 * 32000)]).tobytes()  # a bark, then background
with open(os.path.join(work, "stream.f32"), "wb") as out:
    for _ in range(int((duration + 60) * 32000 * 4 // len(one)) + 1):
        out.write(one)
with open(os.path.join(work, "asound.conf"), "w") as f:
    f.write('</usr/share/alsa/alsa.conf>\npcm.loadin { type file; slave.pcm "null"; file "/dev/null"; infile "%s"; format "raw" }\n'
            % os.path.join(work, "stream.f32"))
labels = os.path.join(fixtures, "audioset/class_labels_indices.csv")
slugs = subprocess.run([binary, "events", "--labels", labels], capture_output=True, text=True, check=True).stdout
slugs = slugs.split("AudioSet labels", 1)[1].splitlines()[1:]
events = [l.split()[1] for l in slugs if len(l.split()) >= 2 and l.split()[0].isdigit()]
with open(os.path.join(work, "config.json"), "w") as f:
    json.dump({"events": events, "settle_seconds": 1, "outputs": {"stdout": False, "socket": sock_path, "max_client_backlog": bound},
               "defaults": {"on_threshold": 0.01, "off_threshold": 0.0099, "min_duration": 0, "merge_gap": 0}}, f)

print(f"socket-load: {duration:.0f} s, {READERS} readers, {STALLED} stalled, {CHURNERS} churning, backlog bound {bound} bytes, "
      f"{len(events)} events at hop 0.25 s; files in {work}")
daemon = subprocess.Popen([binary, "--model", os.path.join(fixtures, "detector/detector.ckpt"), "--labels", labels,
                           "--config", os.path.join(work, "config.json"), "--device", "loadin", "--pace-realtime", "--hop", "0.25",
                           "--stats-interval", "10", "--metrics-file", prom],
                          stdout=subprocess.DEVNULL, stderr=open(log_path, "w"),
                          env=dict(os.environ, ALSA_CONFIG_PATH=os.path.join(work, "asound.conf")))


def log():
    with open(log_path, errors="replace") as f:
        return f.read()


def wait_for(condition, timeout, what):
    deadline = time.time() + timeout
    while not condition():
        if daemon.poll() is not None or time.time() > deadline:
            print(log()[-3000:])
            sys.exit(f"socket-load: {what} (htsatd {'exited' if daemon.poll() is not None else 'still running'})")
        time.sleep(0.05)


def cpu_seconds(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def connect(rcvbuf=None):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    if rcvbuf:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.connect(sock_path)
    s.setblocking(False)
    return s


class Reader:
    """A client reading everything; keeps a digest per line (and, for the reference, the bytes, line offsets, an index)."""

    def __init__(self, reference=False):
        self.sock, self.partial, self.digests, self.eof = connect(), b"", [], False
        self.reference, self.raw, self.offsets, self.index = reference, bytearray(), [0], {}

    def read(self):
        while True:
            try:
                data = self.sock.recv(1 << 16)
            except BlockingIOError:
                return
            if not data:
                self.eof = True
                return
            lines = (self.partial + data).split(b"\n")
            self.partial = lines.pop()
            for line in lines:
                d = digest(line)
                if self.reference:
                    self.index.setdefault(d, len(self.digests))
                    self.raw += line + b"\n"
                    self.offsets.append(len(self.raw))
                self.digests.append(d)


wait_for(lambda: os.path.exists(sock_path), 60, "no socket")
readers = [Reader(reference=(i == 0)) for i in range(READERS)]
reference = readers[0]
wait_for(lambda: "first window processed" in log(), 60, "no window processed")

# The stalled clients: a small receive buffer, and never a read. (A Unix stream socket queues what the sender's send
# buffer allows, whatever the receiver's: the kernel still takes some 140-190 kB for each before the daemon's own
# backlog grows.)
stalled, drops = {}, []
for _ in range(STALLED):
    s = connect(rcvbuf=4096)
    stalled[s.fileno()] = s

churn = [{"cycles": 0, "replays": 0, "errors": []} for _ in range(CHURNERS)]
stop = threading.Event()


def churner(n):
    rng, i, mine = random.Random(n), 0, churn[n]
    while not stop.is_set():
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.settimeout(5)
                s.connect(sock_path)
                mode = i % 3
                if mode == 1:  # read the replay's first line: the latest status
                    data = b""
                    while b"\n" not in data:
                        chunk = s.recv(4096)
                        if not chunk:
                            raise OSError("closed before the replayed status line")
                        data += chunk
                    first = json.loads(data.split(b"\n", 1)[0])
                    if first.get("type") != "status":
                        raise OSError(f"replay began with {first.get('type')}, not status")
                    mine["replays"] += 1
                elif mode == 2:  # shut down the write side, read a little, then go
                    s.shutdown(socket.SHUT_WR)
                    s.settimeout(0.05)
                    try:
                        s.recv(4096)
                    except socket.timeout:
                        pass
            mine["cycles"] += 1
        except OSError as e:
            mine["errors"].append(str(e))
        i += 1
        time.sleep(rng.uniform(0.02, 0.2))


threads = [threading.Thread(target=churner, args=(n,), daemon=True) for n in range(CHURNERS)]
for t in threads:
    t.start()


def on_drop(s):
    """A stalled client the server closed: what it had received against what the readers got meanwhile."""
    reference.read()  # the line that overflowed its backlog went to the readers just before the close
    received = b""
    while True:
        try:
            chunk = s.recv(1 << 16)
        except BlockingIOError:
            break
        if not chunk:
            break
        received += chunk
    lines = received.split(b"\n")
    partial, lines = lines.pop(), [digest(l) for l in lines]
    # Its replay (status, open starts), then a run of the readers' lines from some index j, then part of a line.
    k = next((k for k in range(len(lines)) if lines[k] in reference.index
              and reference.digests[reference.index[lines[k]]:reference.index[lines[k]] + len(lines) - k] == lines[k:]), None)
    if k is None or any(d not in reference.index for d in lines[:k]):
        drops.append({"ok": False, "bytes": len(received)})
        return
    j = reference.index[lines[k]]
    after = j + len(lines) - k
    at = reference.offsets[after]
    prefix_ok = reference.raw[at:at + len(partial)] == partial
    live = at - reference.offsets[j] + len(partial)
    drops.append({"ok": prefix_ok, "bytes": len(received), "lines": len(lines),
                  "queued": reference.offsets[len(reference.digests)] - reference.offsets[j] - live})


cpu0, start = cpu_seconds(daemon.pid), time.time()
fds0 = len(os.listdir(f"/proc/{daemon.pid}/fd"))
poller = select.poll()
for r in readers:
    poller.register(r.sock, select.POLLIN)
for fd in stalled:
    poller.register(fd, 0)  # only hang-ups
by_fd = {r.sock.fileno(): r for r in readers}
while time.time() - start < duration and daemon.poll() is None:
    for fd, ev in poller.poll(100):
        if fd in by_fd:
            by_fd[fd].read()
        elif fd in stalled and ev & (select.POLLHUP | select.POLLERR):
            s = stalled.pop(fd)
            poller.unregister(fd)
            on_drop(s)
            s.close()
            s = connect(rcvbuf=4096)
            stalled[s.fileno()] = s
            poller.register(s, 0)
check(daemon.poll() is None, "htsatd ran for the whole time")
cpu = (cpu_seconds(daemon.pid) - cpu0) / (time.time() - start)
fds = len(os.listdir(f"/proc/{daemon.pid}/fd"))
rss = next(int(l.split()[1]) for l in open(f"/proc/{daemon.pid}/status") if l.startswith("VmRSS"))
with open(prom) as f:  # the last periodic write, while the clients are all connected
    clients_gauge = next((float(l.split()[1]) for l in f if l.startswith("htsatd_socket_clients ")), -1)
stop.set()
for t in threads:
    t.join()
daemon.send_signal(signal.SIGTERM)
deadline = time.time() + 15  # reading on: the stop closes the open events, a burst of stop lines
while (daemon.poll() is None or not all(r.eof for r in readers)) and time.time() < deadline:
    for fd, _ in poller.poll(100):
        if fd in by_fd:
            by_fd[fd].read()
status = daemon.wait(timeout=5)

# The figures and checks.
metrics = {}
for line in open(prom):
    if line and not line.startswith("#"):
        name, value = line.rsplit(" ", 1)
        metrics[name] = float(value)
text = log()
check(status == 0, f"htsatd exited with status {status} after SIGTERM")
check(all(metrics.get(m) == 0 for m in ("htsatd_capture_overruns_total", "htsatd_capture_gap_seconds_total", "htsatd_windows_skipped_total")),
      f"capture never blocked: overruns {metrics.get('htsatd_capture_overruns_total')}, gap "
      f"{metrics.get('htsatd_capture_gap_seconds_total')} s, skipped windows {metrics.get('htsatd_windows_skipped_total')}; "
      f"{metrics.get('htsatd_windows_total', 0):.0f} windows")

ref, tails = reference.digests, []
for r in readers:
    # Its replay lines (status, open starts: lines the reference has) come first; the rest is the reference's tail.
    n = 0
    while n < min(len(ref), len(r.digests)) and ref[-1 - n] == r.digests[-1 - n]:
        n += 1
    replay = r.digests[:len(r.digests) - n]
    tails.append(n if n > 0 and len(replay) <= 1 + len(events) and all(d in reference.index for d in replay) else None)
shared = min((t for t in tails if t is not None), default=0)
counts = [len(r.digests) for r in readers]
check(all(r.eof for r in readers) and None not in tails,
      f"{READERS} readers got identical lines: {shared} lines shared by all from the first they all have "
      f"({reference.offsets[-1] - reference.offsets[len(ref) - shared]} bytes), {min(counts)}..{max(counts)} lines each"
      + ("" if None not in tails else f"; {tails.count(None)} differ"))

dropped_logged = [l for l in text.splitlines() if "dropping event socket client" in l]
reason = f"fell more than {bound} bytes behind"
queued = [d["queued"] for d in drops if "queued" in d]
longest = max((b - a for a, b in zip(reference.offsets, reference.offsets[1:])), default=0)
check(len(drops) >= STALLED and all(d["ok"] for d in drops) and queued and min(queued) > bound - longest
      and dropped_logged and all(reason in l for l in dropped_logged),
      f"stalled clients dropped at the bound: {len(drops)} drops (the {STALLED} clients reconnecting after each), each after "
      f"receiving {min(d['bytes'] for d in drops) if drops else 0}..{max(d['bytes'] for d in drops) if drops else 0} bytes "
      f"({min(d.get('lines', 0) for d in drops) if drops else 0}..{max(d.get('lines', 0) for d in drops) if drops else 0} lines, "
      f"a byte-exact prefix of the stream), with {min(queued, default=0)}..{max(queued, default=0)} bytes "
      f"(median {statistics.median(queued) if queued else 0:.0f}) more published to it; log: {reason!r}")
# At SIGTERM the stalled clients still hold queued lines: the socket writes on for its 2-s bound, then names what it
# left unsent. Only they may be in that line (the readers were checked above to have everything).
unsent = [l for l in text.splitlines() if "closing event socket with lines unsent" in l]
unsent_clients = [int(m) for l in unsent for m in re.findall(r"clients=(\d+)", l)]
check(all(n <= STALLED for n in unsent_clients),
      f"shutdown: lines left unsent to {unsent_clients[0] if unsent_clients else 0} client(s) after the 2-s drain "
      f"(at most the {STALLED} stalled ones)")
others = [l for l in text.splitlines()
          if (" warning " in l or " error " in l or " critical " in l) and l not in dropped_logged and l not in unsent]
errors = [e for c in churn for e in c["errors"]]
check(not errors and not others,
      f"churning clients: {sum(c['cycles'] for c in churn)} connect/disconnect cycles, {sum(c['replays'] for c in churn)} "
      f"replays read, {len(errors)} errors{': ' + errors[0] if errors else ''}; "
      f"{len(others)} other warnings or errors in the log{': ' + others[0] if others else ''}")
print(f"figures: htsatd CPU {100 * cpu:.1f} % of one core over the load, RSS {rss // 1024} MB, fds {fds0} -> {fds}, "
      f"clients gauge {clients_gauge:.0f}, {metrics.get('htsatd_windows_total', 0):.0f} windows, "
      f"load generator CPU {100 * (os.times().user + os.times().system) / (time.time() - start):.1f} %")
os.unlink(os.path.join(work, "stream.f32"))  # large; the log and metrics stay for a look
print("socket-load: " + ("ok" if not failures else f"{len(failures)} check(s) failed"))
sys.exit(1 if failures else 0)
