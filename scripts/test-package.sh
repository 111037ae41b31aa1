#!/usr/bin/env bash
# Builds the Debian package, installs it on this machine with dpkg -i, checks what a server admin relies on,
# then removes and purges it. Meant for CI (root on a throwaway machine; sudo otherwise). It refuses to run
# where htsatd is already installed or /etc/htsatd exists, so it can never purge someone's configuration.
# Prints "N passed, M failed" last and exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."

sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
passed=0 failed=0
pass() { passed=$((passed + 1)); echo "ok   $1"; }
fail() { failed=$((failed + 1)); echo "FAIL $1${2:+: $2}"; }
# check NAME COMMAND...: runs COMMAND, passes if it succeeds; its output is shown only on failure.
check() {
    local name="$1" out; shift
    if out="$("$@" 2>&1)"; then pass "$name"; else fail "$name" "$out"; fi
}
finish() { echo "$passed passed, $failed failed"; [ "$failed" -eq 0 ]; }

if dpkg-query -W -f='${Status}' htsatd 2>/dev/null | grep -qv 'not-installed'; then
    echo "htsatd is already installed here (dpkg -l htsatd); this test would purge it. Refusing." >&2; exit 1
fi
for path in /etc/htsatd /etc/logrotate.d/htsatd /usr/bin/htsatd; do
    [ ! -e "$path" ] || { echo "$path exists; this test would replace or delete it. Refusing." >&2; exit 1; }
done

start=$SECONDS
deb="$(scripts/package-deb.sh | tail -n 1)"
if [ -f "$deb" ]; then pass "package built: $deb"; else fail "package built"; finish; exit 1; fi

installed=0
cleanup() { [ "$installed" = 0 ] || $sudo dpkg -P htsatd >/dev/null 2>&1 || true; }
trap cleanup EXIT

# ---- the package's contents and metadata ----
contents="$(dpkg-deb -c "$deb" | awk '{print $6}' | sed 's|^\.||')"
for f in /usr/bin/htsatd /lib/systemd/system/htsatd.service /etc/htsatd/config.json /etc/logrotate.d/htsatd \
         /usr/share/man/man8/htsatd.8.gz /usr/share/bash-completion/completions/htsatd \
         /usr/share/zsh/vendor-completions/_htsatd /usr/share/fish/vendor_completions.d/htsatd.fish \
         /usr/share/htsatd/download-model.sh; do
    check "contains $f" grep -qx "$f" <<<"$contents"
done
check "conffiles: config and logrotate" \
    diff <(dpkg-deb -I "$deb" conffiles) <(printf '/etc/htsatd/config.json\n/etc/logrotate.d/htsatd\n')
depends="$(dpkg-deb -f "$deb" Depends)"
echo "     Depends: $depends"
for lib in libasound2 libc6 libfftw3-single3 libsndfile1 libsoxr0 libsystemd0; do
    check "Depends names $lib" grep -qE "(^|, )$lib( |,|$)" <<<"$depends"
done

# ---- install ----
if out="$($sudo dpkg -i "$deb" 2>&1)"; then installed=1; pass "dpkg -i"; else fail "dpkg -i" "$out"; finish; exit 1; fi
check "dpkg: installed" bash -c "dpkg-query -W -f='\${Status}' htsatd | grep -qx 'install ok installed'"
check "the unit is neither enabled nor started" \
    bash -c '! find /etc/systemd/system -name "htsatd*" | grep -q . && ! systemctl is-active -q htsatd 2>/dev/null'

# ---- the binary ----
libs="$(ldd /usr/bin/htsatd 2>&1)"
check "ldd: nothing missing" bash -c "! grep -q 'not found' <<<\"\$1\"" _ "$libs"
check "ldd: no toolchain path" bash -c "! grep -qE '/opt/|swift' <<<\"\$1\"" _ "$libs"
check "ldd: only system library directories" \
    bash -c "! grep -oE '/[^ ]+' <<<\"\$1\" | grep -vE '^/(usr/)?lib(64|32|x32)?/'" _ "$libs"
version_line="$(/usr/bin/htsatd --version 2>&1 || true)"
echo "     $version_line"
check "htsatd --version: version and kernels" \
    grep -qxE "htsatd $(dpkg-query -W -f='${Version}' htsatd | sed 's/[.+~]/\\&/g') \((avx512|avx2|generic) kernels\)" <<<"$version_line"
check "HTSAT_KERNELS=generic htsatd --version" \
    bash -c 'HTSAT_KERNELS=generic /usr/bin/htsatd --version | grep -q "(generic kernels)"'
check "htsatd events" bash -c '/usr/bin/htsatd events | grep -q dog_bark'
check "htsatd --help" bash -c '/usr/bin/htsatd --help | grep -q USAGE'

# ---- unit, man page, completions, logrotate ----
check "unit runs /usr/bin/htsatd" grep -q '^ExecStart=/usr/bin/htsatd ' /lib/systemd/system/htsatd.service
for unit in /lib/systemd/system/htsatd*.service; do
    check "systemd-analyze verify $(basename "$unit")" systemd-analyze verify "$unit"
done
check "man -l renders the page" \
    bash -c 'MANPAGER=cat MANWIDTH=80 man -l /usr/share/man/man8/htsatd.8.gz | grep -q "EXIT STATUS"'
check "man htsatd finds the page" bash -c 'man -w htsatd | grep -qx /usr/share/man/man8/htsatd.8.gz'
if command -v mandoc >/dev/null; then
    check "mandoc -Tlint -W warning" mandoc -Tlint -W warning /usr/share/man/man8/htsatd.8.gz
fi
check "bash completion loads" \
    bash -c 'source /usr/share/bash-completion/completions/htsatd && complete -p htsatd'
check "zsh completion is one" grep -q '^#compdef htsatd' /usr/share/zsh/vendor-completions/_htsatd
check "fish completion is one" grep -qE "^complete -c '?htsatd'?" /usr/share/fish/vendor_completions.d/htsatd.fish
if command -v logrotate >/dev/null; then
    check "logrotate -d accepts the snippet" $sudo logrotate -d /etc/logrotate.d/htsatd
fi

# ---- remove keeps the configuration, purge deletes it ----
if out="$($sudo dpkg -r htsatd 2>&1)"; then pass "dpkg -r"; else fail "dpkg -r" "$out"; fi
check "remove: binary gone" test ! -e /usr/bin/htsatd
check "remove: unit gone" test ! -e /lib/systemd/system/htsatd.service
check "remove: /etc/htsatd/config.json kept" test -f /etc/htsatd/config.json
check "remove: state config-files" \
    bash -c "dpkg-query -W -f='\${Status}' htsatd | grep -qx 'deinstall ok config-files'"
if out="$($sudo dpkg -P htsatd 2>&1)"; then installed=0; pass "dpkg -P"; else fail "dpkg -P" "$out"; fi
check "purge: /etc/htsatd/config.json gone" test ! -e /etc/htsatd/config.json
check "purge: /etc/htsatd gone" test ! -e /etc/htsatd
check "purge: /etc/logrotate.d/htsatd gone" test ! -e /etc/logrotate.d/htsatd
check "purge: dpkg forgot it" bash -c "! dpkg-query -W -f='\${Status}' htsatd 2>/dev/null | grep -q installed"

echo "     package test took $((SECONDS - start)) s"
finish
