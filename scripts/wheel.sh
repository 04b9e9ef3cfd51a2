#!/usr/bin/env bash
# Builds what users install into dist/: the abi3 wheel for Linux x86_64
# (CPython 3.10 and later) and the sdist, then checks them.
#
# The wheel is built against glibc 2.17 (maturin links through zig), so it is
# manylinux2014 (manylinux_2_17): it installs on glibc Linux from CentOS 7 and
# Ubuntu 14.04 on, which covers the clusters and notebook servers users run.
# `auditwheel show` must find the wheel consistent with that tag, or this fails.
# The wheel is then installed into fresh virtual environments whose PATH has no
# cargo or rustc, and scripts/wheel_smoke.py runs in each; the sdist is built
# from source (this one needs Rust) in another fresh environment and passes
# the same smoke test.
#
#   bash scripts/wheel.sh        wheel and sdist; the wheel on CPython 3.10-3.13,
#                                the sdist on this machine's python3
#   bash scripts/wheel.sh --ci   wheel and sdist; the wheel on CPython 3.10 only
#
# What it needs it installs into .venv-wheel (maturin, zig, auditwheel). The
# interpreters come from pyenv (`pyenv install 3.10 3.13`) or, failing that,
# python3.10 ... python3.13 on PATH.
set -euo pipefail
cd "$(dirname "$0")/.."

case ${1:-all} in
all) versions=(3.10 3.11 3.12 3.13) sdist_check=yes ;;
# 3.10 because the rest of CI runs on 3.11: it is the oldest Python the wheel
# claims (abi3-py310, requires-python), and nothing else would catch newer syntax.
--ci) versions=(3.10) sdist_check=no ;;
*)
	echo "usage: bash scripts/wheel.sh [--ci]" >&2
	exit 2
	;;
esac

# manylinux2014 in PEP 600 spelling: the tag the wheel claims and auditwheel must confirm.
manylinux=manylinux2014
claimed_glibc_minor=17
platform_tag=manylinux_2_${claimed_glibc_minor}_x86_64

repo=$PWD
work=$(mktemp -d -t anthill-wheel.XXXXXX)
trap 'rm -rf "$work"' EXIT

fail() {
	echo "wheel.sh: $*" >&2
	exit 1
}

host_python=$(command -v python3)
"$host_python" -m venv .venv-wheel
.venv-wheel/bin/python -m pip install --quiet --upgrade pip
.venv-wheel/bin/python -m pip install --quiet \
	'maturin[zig]==1.16.0' 'ziglang==0.17.1' 'auditwheel==6.8.2'
# maturin runs zig as `python -m ziglang`, with the first python on PATH.
export PATH="$repo/.venv-wheel/bin:$PATH"

rm -rf dist
# The `dist` profile (Cargo.toml): release, stripped.
maturin build --profile dist --zig --compatibility "$manylinux" --out dist
maturin sdist --out dist
wheels=(dist/*.whl)
sdists=(dist/*.tar.gz)
if [ ${#wheels[@]} -ne 1 ] || [ ${#sdists[@]} -ne 1 ]; then
	fail "expected one wheel and one sdist in dist/"
fi
wheel=$repo/${wheels[0]}
sdist=$repo/${sdists[0]}
[[ $wheel == *"$platform_tag"* ]] || fail "$wheel does not claim $platform_tag"

# auditwheel names the most compatible tag the wheel's symbols and libraries
# allow; its glibc must be no newer than the one claimed.
audit=$(auditwheel show "$wheel")
echo "$audit"
audit_tag=$(tr -s ' \n' ' ' <<<"$audit" |
	sed -n 's/.*is consistent with the following platform tag: "\(manylinux_[0-9_]*_x86_64\)".*/\1/p')
[[ $audit_tag =~ ^manylinux_2_([0-9]+)_x86_64$ ]] || fail "auditwheel found no manylinux tag"
((BASH_REMATCH[1] <= claimed_glibc_minor)) ||
	fail "auditwheel says $audit_tag, newer than the claimed $platform_tag"

# This PATH without the directories that hold cargo or rustc.
rust_free_path() {
	local dir dirs kept=
	IFS=: read -ra dirs <<<"$PATH"
	for dir in "${dirs[@]}"; do
		if [ -x "$dir/cargo" ] || [ -x "$dir/rustc" ]; then
			continue
		fi
		kept=${kept:+$kept:}$dir
	done
	echo "$kept"
}

# The interpreter of CPython $1 (e.g. 3.10): pyenv's newest, else python$1 on PATH.
find_python() {
	local version=$1 python=
	if command -v pyenv >/dev/null && pyenv latest "$version" >/dev/null 2>&1; then
		python="$(pyenv root)/versions/$(pyenv latest "$version")/bin/python$version"
	elif command -v "python$version" >/dev/null; then
		python=$(command -v "python$version")
	fi
	if [ -z "$python" ] || ! "$python" -c 'import sys; sys.exit(f"{sys.version_info[0]}.{sys.version_info[1]}" != sys.argv[1])' "$version"; then
		fail "no CPython $version: install it (pyenv install $version) to check the wheel on it"
	fi
	echo "$python"
}

# A fresh venv of $1 named $2 with anthill from $3 (the wheel or the sdist)
# installed with its extras, then the smoke test in it.
install_and_smoke() {
	local python=$1 venv=$work/$2 package=$3 only_binary=$4
	"$python" -m venv "$venv"
	(
		unset VIRTUAL_ENV
		PATH="$venv/bin:$PATH"
		python -m pip install --quiet --upgrade pip
		if [ "$only_binary" = yes ]; then
			# Everything from wheels: nothing may be compiled.
			python -m pip install --quiet --only-binary :all: "${package}[fsspec,zarr]"
		else
			python -m pip install --quiet "${package}[fsspec,zarr]"
		fi
		cd "$work"
		python "$repo/scripts/wheel_smoke.py" "$repo/README.md"
	)
}

for version in "${versions[@]}"; do
	python=$(find_python "$version")
	echo "== the wheel on CPython $version ($python), no Rust on PATH"
	(
		PATH=$(rust_free_path)
		if command -v cargo || command -v rustc; then
			fail "cargo or rustc is still on PATH"
		fi
		install_and_smoke "$python" "wheel-$version" "$wheel" yes
	)
done

if [ "$sdist_check" = yes ]; then
	echo "== the sdist, built from source with Rust, on $("$host_python" --version)"
	(
		# The dependencies built by earlier runs (same profile, same features) are reused.
		export CARGO_TARGET_DIR=$repo/target
		install_and_smoke "$host_python" sdist "$sdist" no
	)
fi
echo "wheel.sh: $(basename "$wheel") ($(du -h "$wheel" | cut -f1)) and $(basename "$sdist") pass"
