#!/usr/bin/env bash
# Fetches what htsatd needs to run: the official HTS-AT AudioSet checkpoint and AudioSet's label list.
#
#   scripts/download-model.sh [DIR]        (DIR defaults to /var/lib/htsatd)
#
# Idempotent: a file already present with the right SHA-256 is kept. Downloads go to NAME.part and are
# renamed only once verified, so an interrupted run never leaves a half file under the final name.
#
# Checksums:
#   - class_labels_indices.csv is pinned (SHA-256 of AudioSet's official file).
#   - The checkpoint has no published checksum. Unless HTSATD_CKPT_SHA256 pins one, the first copy is
#     trusted and its SHA-256 recorded in HTSAT_AudioSet_Saved_1.ckpt.sha256 beside it; later runs
#     verify against that record.
#
# Environment overrides:
#   HTSATD_CKPT_URL     where to fetch the checkpoint (any URL curl supports, e.g. a local mirror or file://)
#   HTSATD_LABELS_URL   where to fetch class_labels_indices.csv
#   HTSATD_CKPT_SHA256  the checkpoint's expected SHA-256 (overrides the recorded one)
#
# The official checkpoints are in a Google Drive folder (README of RetroCirce/HTS-Audio-Transformer):
#   https://drive.google.com/drive/folders/1f5VYMk0uos_YnuBshgmaTVioXbs7Kmz6
# The default URL below is Drive's direct-download endpoint for the file ID that third-party scripts use
# for HTSAT_AudioSet_Saved_1.ckpt; it is not listed in the official README. If it fails (Drive quotas,
# changed IDs), download the file in a browser, put it at DIR/HTSAT_AudioSet_Saved_1.ckpt and run this
# script again: it will verify the label file and record the checkpoint's checksum.
set -euo pipefail

readonly CKPT_NAME="HTSAT_AudioSet_Saved_1.ckpt"
readonly LABELS_NAME="class_labels_indices.csv"
readonly CKPT_URL="${HTSATD_CKPT_URL:-https://drive.usercontent.google.com/download?id=1HE9KQBGLFWMZ0CwG_USbpMc7o4lEzRiN&export=download&confirm=t}"
readonly LABELS_URL="${HTSATD_LABELS_URL:-http://storage.googleapis.com/us_audioset/youtube_corpus/v1/csv/class_labels_indices.csv}"
readonly LABELS_SHA256="cdd1049833c4b86127c2773ac0d14a2754b6a6d0d1798002ed5c66e699708429"
readonly OFFICIAL_FOLDER="https://drive.google.com/drive/folders/1f5VYMk0uos_YnuBshgmaTVioXbs7Kmz6"

die() { echo "download-model: error: $*" >&2; exit 1; }
note() { echo "download-model: $*" >&2; }

usage() {
    sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
}

case "${1:-}" in
    -h|--help) usage; exit 0 ;;
    -*) die "unknown option $1 (usage: $0 [DIR])" ;;
esac
[ $# -le 1 ] || die "too many arguments (usage: $0 [DIR])"
readonly DIR="${1:-/var/lib/htsatd}"

command -v curl >/dev/null || die "curl is not installed (apt-get install curl)"
if command -v sha256sum >/dev/null; then
    sha256() { sha256sum -- "$1" | cut -d' ' -f1; }
elif command -v shasum >/dev/null; then
    sha256() { shasum -a 256 -- "$1" | cut -d' ' -f1; }
else
    die "neither sha256sum nor shasum is installed (apt-get install coreutils)"
fi

is_sha256() { [[ "$1" =~ ^[0-9a-f]{64}$ ]]; }

mkdir -p -- "$DIR" || die "cannot create $DIR (run as root for /var/lib/htsatd, or pass another directory)"
[ -w "$DIR" ] || die "cannot write to $DIR (run as root for /var/lib/htsatd, or pass another directory)"

# download URL DEST: fetches into DEST (a .part file), failing with a clear message.
download() {
    local url="$1" dest="$2" progress=(--silent --show-error)
    [ -t 2 ] && progress=(--progress-bar)
    rm -f -- "$dest"
    note "downloading $url"
    local rc=0
    curl --fail --location --retry 3 --retry-delay 2 --connect-timeout 30 "${progress[@]}" \
        --output "$dest" -- "$url" || rc=$?
    if [ "$rc" -ne 0 ]; then
        rm -f -- "$dest"
        die "download of $url failed (curl exit status $rc); check the network or set the URL (see $0 --help)"
    fi
}

# check_checkpoint FILE: the official checkpoints are PyTorch ZIP archives; catches HTML error pages.
check_checkpoint() {
    local file="$1" head
    head="$(head -c 512 -- "$file" | tr -d '\0' | tr '[:upper:]' '[:lower:]')"
    if [[ "$head" == *"<!doctype html"* || "$head" == *"<html"* ]]; then
        return 2
    fi
    [ "$(head -c 4 -- "$file" | od -An -tx1 | tr -d ' \n')" = "504b0304" ]
}

# check_labels FILE: AudioSet's label list starts with this header.
check_labels() {
    [ "$(head -n 1 -- "$1" | tr -d '\r')" = "index,mid,display_name" ]
}

# ---- labels: pinned checksum ----
labels="$DIR/$LABELS_NAME"
if [ -f "$labels" ] && [ "$(sha256 "$labels")" = "$LABELS_SHA256" ]; then
    note "$labels is present and verified"
else
    [ -f "$labels" ] && note "$labels has an unexpected checksum; downloading it again"
    download "$LABELS_URL" "$labels.part"
    check_labels "$labels.part" || { rm -f -- "$labels.part"; die "$LABELS_URL is not AudioSet's class_labels_indices.csv (no 'index,mid,display_name' header)"; }
    actual="$(sha256 "$labels.part")"
    if [ "$actual" != "$LABELS_SHA256" ]; then
        rm -f -- "$labels.part"
        die "checksum mismatch for $LABELS_NAME from $LABELS_URL: expected $LABELS_SHA256, got $actual"
    fi
    chmod 0644 -- "$labels.part"
    mv -f -- "$labels.part" "$labels"
    note "$labels downloaded and verified"
fi

# ---- checkpoint: pinned by HTSATD_CKPT_SHA256, else by the recorded sidecar, else trusted on first use ----
ckpt="$DIR/$CKPT_NAME"
sidecar="$ckpt.sha256"
expected="" origin=""
if [ -n "${HTSATD_CKPT_SHA256:-}" ]; then
    expected="$(echo "$HTSATD_CKPT_SHA256" | tr '[:upper:]' '[:lower:]')"
    is_sha256 "$expected" || die "HTSATD_CKPT_SHA256 must be 64 hex digits, got '$HTSATD_CKPT_SHA256'"
    origin="HTSATD_CKPT_SHA256"
elif [ -f "$sidecar" ]; then
    expected="$(cut -d' ' -f1 < "$sidecar" | head -n 1)"
    is_sha256 "$expected" || die "$sidecar does not hold a SHA-256; delete it to trust the checkpoint anew"
    origin="$sidecar"
fi

# record_checksum SUM: writes the sidecar atomically, in sha256sum -c format.
record_checksum() {
    echo "$1  $CKPT_NAME" > "$sidecar.part"
    chmod 0644 -- "$sidecar.part"
    mv -f -- "$sidecar.part" "$sidecar"
}

trust_on_first_use() {
    record_checksum "$1"
    cat >&2 <<EOF
download-model: ************************************************************************
download-model: WARNING: no published checksum exists for $CKPT_NAME, so this copy is
download-model: TRUSTED ON FIRST USE. Its SHA-256, recorded in $sidecar, is
download-model:   $1
download-model: Compare it with a copy from the official folder if you can:
download-model:   $OFFICIAL_FOLDER
download-model: To pin it explicitly: HTSATD_CKPT_SHA256=$1 $0 $DIR
download-model: ************************************************************************
EOF
}

if [ -f "$ckpt" ]; then
    actual="$(sha256 "$ckpt")"
    if [ -n "$expected" ] && [ "$actual" = "$expected" ]; then
        note "$ckpt is present and verified (against $origin)"
        [ "$origin" = "$sidecar" ] || record_checksum "$actual"
        present=1
    elif [ -z "$expected" ]; then
        # Placed here by hand (e.g. downloaded in a browser): check its format, then trust it.
        check_checkpoint "$ckpt" || die "$ckpt is not a PyTorch checkpoint (not a ZIP archive); delete it and run again"
        note "$ckpt is present (placed by hand?)"
        trust_on_first_use "$actual"
        present=1
    else
        note "$ckpt does not match $origin ($expected, got $actual); downloading it again"
        present=0
    fi
else
    present=0
fi

if [ "$present" -eq 0 ]; then
    download "$CKPT_URL" "$ckpt.part"
    status=0
    check_checkpoint "$ckpt.part" || status=$?
    if [ "$status" -ne 0 ]; then
        rm -f -- "$ckpt.part"
        if [ "$status" -eq 2 ]; then
            die "$CKPT_URL returned an HTML page, not the checkpoint (Google Drive's confirmation or quota page?). Download $CKPT_NAME in a browser from $OFFICIAL_FOLDER, put it at $ckpt and run this script again."
        fi
        die "$CKPT_URL did not return a PyTorch checkpoint (not a ZIP archive)"
    fi
    actual="$(sha256 "$ckpt.part")"
    if [ -n "$expected" ] && [ "$actual" != "$expected" ]; then
        rm -f -- "$ckpt.part"
        die "checksum mismatch for $CKPT_NAME from $CKPT_URL: expected $expected (from $origin), got $actual. If the file changed upstream on purpose, delete $sidecar (or fix HTSATD_CKPT_SHA256) and run again."
    fi
    chmod 0644 -- "$ckpt.part"
    mv -f -- "$ckpt.part" "$ckpt"
    if [ -n "$expected" ]; then
        note "$ckpt downloaded and verified (against $origin)"
        [ "$origin" = "$sidecar" ] || record_checksum "$actual"
    else
        note "$ckpt downloaded"
        trust_on_first_use "$actual"
    fi
fi

dir_abs="$(cd -- "$DIR" && pwd)"
cat <<EOF
Model ready in $dir_abs. Next:
  htsatd --model $dir_abs/$CKPT_NAME --events dog_bark,siren
(the labels file beside the model is found automatically; 'htsatd events' lists event names)
EOF
