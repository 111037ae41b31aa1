#!/usr/bin/env bash
# Builds the Debian package dist/htsatd_<version>_<arch>.deb, offline, with Debian's own tools (dpkg-deb,
# dpkg-shlibdeps), and prints its path on the last line of stdout.
#
#   scripts/package-deb.sh
#
# The binary is a release build with the Swift runtime and Foundation linked in (--static-swift-stdlib), so the
# target machine needs no toolchain, only the Debian libraries named in Depends:. It is built in its own scratch
# path (HTSATD_SCRATCH, default .build-static) under the shared build lock, so it never disturbs .build.
# The version is the one `htsatd --version` prints (Sources/Daemon/Version.swift), read back from the binary.
# The man page comes from swift-argument-parser's generate-manual (the tool behind its `swift package
# generate-manual` plugin) run on the same binary, plus packaging/htsatd.8.sections; completions from the
# binary's --generate-completion-script.
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD"
scratch="${HTSATD_SCRATCH:-.build-static}"

die() { echo "package-deb: error: $*" >&2; exit 1; }
note() { echo "package-deb: $*" >&2; }

for tool in swift dpkg-deb dpkg-shlibdeps strip gzip; do
    command -v "$tool" >/dev/null || die "$tool not found (scripts/install-deps.sh installs dpkg-dev; Swift: see README)"
done

# Both products with the same flags: the plugin route would relink htsatd without --static-swift-stdlib.
for product in htsatd generate-manual; do
    note "building $product (release, static Swift runtime) in $scratch"
    swift build -c release --static-swift-stdlib --scratch-path "$scratch" --product "$product" >&2
done
bin="$scratch/release/htsatd"
generate_manual="$scratch/release/generate-manual"

# Only system libraries: no toolchain path, nothing missing.
libs="$(ldd "$bin")"
bad="$(grep -E 'not found|swift' <<<"$libs" || true)"
bad+="$(grep -oE '/[^ ]+' <<<"$libs" | grep -vE '^/(usr/)?lib(64|32|x32)?/' || true)"
[ -z "$bad" ] || die "$bin needs libraries outside the system directories:"$'\n'"$bad"

version="$("$bin" --version | awk '{print $2}')"
[[ "$version" =~ ^[0-9]+\.[0-9]+\.[0-9]+([~+.-][0-9A-Za-z.~+-]+)?$ ]] || die "unexpected version '$version' from $bin --version"
arch="$(dpkg --print-architecture)"
# Reproducible dates: the last commit's, not the build time.
epoch="$(git log -1 --format=%ct 2>/dev/null || date +%s)"
export SOURCE_DATE_EPOCH="$epoch"

mkdir -p dist
stage="$(mktemp -d "$root/dist/stage.XXXXXX")"
trap 'rm -rf -- "$stage"' EXIT
pkg="$stage/pkg"

# Binary, stripped of debug info (60 MB instead of 80).
install -D -m 0755 "$bin" "$pkg/usr/bin/htsatd"
strip --strip-unneeded "$pkg/usr/bin/htsatd"

# Units: the repo's, with ExecStart on the packaged binary (the repo's unit keeps /usr/local/bin for source
# installs) and the man page as documentation. Drop-in directories (NAME.service.d/*.conf) go along as they are.
for unit in systemd/*.service; do
    dest="$pkg/lib/systemd/system/$(basename "$unit")"
    install -D -m 0644 "$unit" "$dest"
    sed -i -e 's|^\(Exec[A-Za-z]*=[-@:+!]*\)/usr/local/bin/htsatd|\1/usr/bin/htsatd|' \
           -e 's|^Documentation=|Documentation=man:htsatd(8) |' "$dest"
    # The header's "Install:" steps are for source installs; the package did them.
    awk '/^# Install:/ { print "# Installed by the htsatd Debian package. Then:"; print "#   /usr/share/htsatd/download-model.sh /var/lib/htsatd   # checkpoint + labels"; print "#   edit /etc/htsatd/config.json (device, events); systemctl enable --now htsatd"; skip = 1; next }
         skip && /^#   / { next } { skip = 0; print }' "$dest" > "$dest.tmp" && mv "$dest.tmp" "$dest"
    chmod 0644 "$dest"
    ! grep -q '/usr/local/bin' "$dest" || die "$dest still refers to /usr/local/bin"
done
for dropins in systemd/*.d; do
    [ -d "$dropins" ] || continue
    for conf in "$dropins"/*.conf; do
        install -D -m 0644 "$conf" "$pkg/lib/systemd/system/$(basename "$dropins")/$(basename "$conf")"
    done
done

# Configuration and log rotation: conffiles, so upgrades keep the admin's edits and purge deletes them.
install -D -m 0644 config.example.json "$pkg/etc/htsatd/config.json"
install -D -m 0644 packaging/htsatd.logrotate "$pkg/etc/logrotate.d/htsatd"

# The model is not packaged (300 MB, its own terms): the download script is.
install -D -m 0755 scripts/download-model.sh "$pkg/usr/share/htsatd/download-model.sh"
install -D -m 0644 config.example.json "$pkg/usr/share/doc/htsatd/config.example.json"
install -D -m 0644 README.md "$pkg/usr/share/doc/htsatd/README.md"
gzip -9n "$pkg/usr/share/doc/htsatd/README.md"

# Man page: generated from the command definitions, then our sections replace the generic EXIT STATUS.
manual="$stage/manual"
mkdir -p "$manual"
"$generate_manual" "$bin" --section 8 --date "$(date -u -d "@$epoch" +%F)" --output-directory "$manual" >&2
[ -f "$manual/htsatd.8" ] || die "generate-manual wrote no htsatd.8"
# mdoc wants each sentence on its own line and no trailing period on .Nd (mandoc -Tlint warns otherwise).
awk '/^\.Sh "?EXIT STATUS"?$/ { skip = 1; next } /^\.Sh / { skip = 0 } !skip' "$manual/htsatd.8" |
    sed -e "s/^\.Os\$/.Os htsatd $version/" -e '/^\.Nd /s/\.\("\?\)$/\1/' -e '/^[^.]/s/\([a-z)]\.\) \([A-Z]\)/\1\n\2/g' > "$manual/htsatd.8.tmp"
cat "$manual/htsatd.8.tmp" packaging/htsatd.8.sections > "$manual/htsatd.8"
install -D -m 0644 "$manual/htsatd.8" "$pkg/usr/share/man/man8/htsatd.8"
gzip -9n "$pkg/usr/share/man/man8/htsatd.8"

# Completions, where Debian's bash-completion, zsh and fish look for them.
# bash-completion sources its files, so the generated #! line goes (lintian: bash-completion-with-hashbang).
completion() {
    "$bin" --generate-completion-script "$1" | sed '1{/^#!/d}' > "$2" && [ -s "$2" ] || die "no $1 completion"
    chmod 0644 "$2"
}
mkdir -p "$pkg/usr/share/bash-completion/completions" "$pkg/usr/share/zsh/vendor-completions" \
         "$pkg/usr/share/fish/vendor_completions.d"
completion bash "$pkg/usr/share/bash-completion/completions/htsatd"
completion zsh "$pkg/usr/share/zsh/vendor-completions/_htsatd"
completion fish "$pkg/usr/share/fish/vendor_completions.d/htsatd.fish"

# Depends: exactly the libraries the binary links (its NEEDED entries), as Debian's shlibs files name them.
mkdir -p "$stage/debian"
printf 'Source: htsatd\n\nPackage: htsatd\nArchitecture: any\n' > "$stage/debian/control"
depends="$(cd "$stage" && dpkg-shlibdeps -O "$pkg/usr/bin/htsatd" 2>/dev/null | sed -n 's/^shlibs:Depends=//p')"
[ -n "$depends" ] || die "dpkg-shlibdeps found no dependencies for the binary"

maintainer="${HTSATD_MAINTAINER:-$(git config user.name 2>/dev/null || echo htsatd maintainers) <$(git config user.email 2>/dev/null || echo root@localhost)>}"
# A native package's changelog (Debian policy 12.7); the history itself is in git.
cat > "$pkg/usr/share/doc/htsatd/changelog" <<EOF
htsatd ($version) unstable; urgency=medium

  * Release $version, built from $(git describe --always --dirty 2>/dev/null || echo "an unknown commit").
    Changes: the project's git history.

 -- $maintainer  $(date -u -R -d "@$epoch")
EOF
gzip -9n "$pkg/usr/share/doc/htsatd/changelog"

install -d -m 0755 "$pkg/DEBIAN"
cat > "$pkg/DEBIAN/control" <<EOF
Package: htsatd
Version: $version
Architecture: $arch
Maintainer: $maintainer
Installed-Size: $(du -sk --exclude=DEBIAN "$pkg" | cut -f1)
Depends: $depends
Recommends: curl, ca-certificates
Suggests: socat, logrotate
Section: sound
Priority: optional
Description: real-time sound event detector daemon (HTS-AT)
 htsatd runs the official HTS-AT audio tagger on a live ALSA microphone or an
 audio file and writes start/stop events of sounds such as a dog barking, a
 siren or a smoke alarm as JSON lines to stdout, a Unix socket and a log file.
 .
 The package installs the daemon with its systemd unit (not enabled), a
 configuration in /etc/htsatd, a logrotate snippet, the man page, shell
 completions and /usr/share/htsatd/download-model.sh, which fetches the
 official checkpoint.
EOF
printf '/etc/htsatd/config.json\n/etc/logrotate.d/htsatd\n' > "$pkg/DEBIAN/conffiles"
for script in postinst prerm postrm; do
    install -m 0755 "packaging/deb/$script" "$pkg/DEBIAN/$script"
done

deb="dist/htsatd_${version}_${arch}.deb"
dpkg-deb --root-owner-group -Zxz --build "$pkg" "$deb" >&2
note "Depends: $depends"
note "$(du -h "$deb" | cut -f1) $deb (binary $(du -h "$pkg/usr/bin/htsatd" | cut -f1))"
echo "$deb"
