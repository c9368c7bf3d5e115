#!/usr/bin/env bash
# Packs the npm packages of mcp-oauth into target/npm/: the launcher
# (@tower-mcp-oauth/mcp-oauth) and the binary package of one platform.
#
#   npm/build.sh                       this machine's platform, built with the dist profile
#   npm/build.sh TRIPLE NPM-PLATFORM   another target, e.g. aarch64-apple-darwin darwin-arm64
#
# The other platforms are built the same way on a machine of theirs (or with cross): one run
# per entry of the launcher's optionalDependencies, then `npm publish` of each tarball, the
# binary packages first.
set -euo pipefail
cd "$(dirname "$0")/.."

version=$(sed -n 's/^version = "\(.*\)"/\1/p' mcp-oauth/Cargo.toml | head -n1)
launcher_version=$(node -p "require('./npm/mcp-oauth/package.json').version")
if [ "$version" != "$launcher_version" ]; then
  echo "npm/mcp-oauth/package.json says $launcher_version, mcp-oauth/Cargo.toml $version" >&2
  exit 1
fi

triple=${1:-}
platform=${2:-}
if [ -z "$platform" ]; then
  platform=$(node -p 'process.platform + "-" + process.arch')
fi
os=${platform%-*}
cpu=${platform#*-}
exe=mcp-oauth
[ "$os" = win32 ] && exe=mcp-oauth.exe

build=(cargo build --quiet --profile dist -p mcp-oauth --bin mcp-oauth)
if [ -n "$triple" ]; then
  "${build[@]}" --target "$triple"
  binary=target/$triple/dist/$exe
else
  "${build[@]}"
  binary=target/dist/$exe
fi

out=target/npm
stage=$out/stage
rm -rf "$stage"
mkdir -p "$stage/platform/bin" "$stage/launcher"
# Linux binaries link glibc: npm then skips them on musl (Alpine) instead of failing to start.
libc=""
[ "$os" = linux ] && libc='\n  "libc": ["glibc"],'
sed -e "s/@PLATFORM@/$platform/g" -e "s/@VERSION@/$version/g" -e "s/@OS@/$os/g" \
  -e "s/@CPU@/$cpu/g" -e "s/@LIBC@/$libc/" npm/platform/package.json.in >"$stage/platform/package.json"
cp "$binary" "$stage/platform/bin/$exe"
cp -R npm/mcp-oauth/. "$stage/launcher/"
(cd "$out" && npm pack --silent ./stage/platform ./stage/launcher >/dev/null)
rm -rf "$stage"
ls -l "$out"/*.tgz
echo "binary: $(wc -c <"$binary") bytes ($binary)"
