#!/usr/bin/env bash
# The other ansible-core releases the collection supports (tests/run.sh's compat stage).
#
# Usage: tests/compat/run.sh [RELEASE...]   (default: every tests/compat/requirements-*.txt)
#
# For each release: a venv of the Python it needs, with tests/compat/requirements-RELEASE.txt (that
# ansible-core, libvirt-python built against this machine's libvirt-dev, the test tools), cached in
# $COMPAT_CACHE/RELEASE-pyX.Y-KEY (KEY: a hash of the requirements file and the exact Python; an old one is
# removed when the key changes); then, in that venv: the unit tests, tests/compat (a module failure through
# ansible-playbook is a plain message) and ansible-test sanity of that release but pylint (tests/sanity/run.sh).
#
#   2.16  the oldest release meta/runtime.yml claims; Python 3.11
#   2.21  the newest release (2.20 and later need Python 3.12 or later); Python 3.13, else 3.12
#
# The Pythons come from pyenv ($(pyenv root)/versions/X.Y.*) or the PATH (pythonX.Y); a missing one fails
# the run with a message saying so.
#
# Environment:
#   COMPAT_CACHE   where the venvs live (default /var/cache/kvm-snapshots-lab/compat when writable, else
#                  tests/output/compat)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
cd "$root"
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_PROGRESS_BAR=off PIP_ROOT_USER_ACTION=ignore

if [[ -n ${COMPAT_CACHE:-} ]]; then
    cache=$COMPAT_CACHE
elif mkdir -p /var/cache/kvm-snapshots-lab/compat 2>/dev/null && [[ -w /var/cache/kvm-snapshots-lab/compat ]]; then
    cache=/var/cache/kvm-snapshots-lab/compat
else
    cache=$root/tests/output/compat
fi
mkdir -p "$cache"

# the Pythons each release runs on, in order of preference
pythons_of() {
    case $1 in
        2.16) echo 3.11 ;;
        *) echo 3.13 3.12 ;;
    esac
}

find_python() {  # find_python X.Y: print the path of a working Python X.Y, or fail
    local want=$1 candidate pyenv_root=""
    if command -v pyenv >/dev/null; then pyenv_root=$(pyenv root); fi
    for candidate in $(printf '%s\n' "${pyenv_root:-/nonexistent}/versions/$want".* | sort -V -r) \
        "$(command -v "python$want" || true)"; do
        [[ -n $candidate ]] || continue
        [[ -d $candidate ]] && candidate=$candidate/bin/python$want
        if [[ -x $candidate ]] && [[ $("$candidate" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null) == "$want" ]]; then
            echo "$candidate"
            return 0
        fi
    done
    return 1
}

venv_for() {  # venv_for RELEASE PYTHON: print the path of the cached venv, building it first if needed
    local release=$1 python=$2 req=$here/requirements-$1.txt key dir pyver start=$SECONDS
    pyver=$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
    key=$({ cat "$req"; "$python" -VV; } | sha256sum | cut -c1-12)
    dir=$cache/$release-py$pyver-$key
    if [[ -f $dir/.complete ]]; then
        echo "$dir"
        return 0
    fi
    # another key of the same release and Python (out of date), or a build that did not finish
    rm -rf "$cache/$release-py$pyver-"*
    echo "compat: building $dir from $(basename "$req") with $python" >&2
    # built in place: a venv's scripts name its path in their #! line
    if ! { "$python" -m venv "$dir" >&2 && "$dir/bin/python" -m pip install --quiet -r "$req" >&2; }; then
        rm -rf "$dir"
        echo "compat: could not build the venv of ansible-core $release" >&2
        return 1
    fi
    touch "$dir/.complete"
    echo "compat: built in $((SECONDS - start)) s" >&2
    echo "$dir"
}

releases=("$@")
if ((${#releases[@]} == 0)); then
    for req in "$here"/requirements-*.txt; do
        name=$(basename "$req" .txt)
        releases+=("${name#requirements-}")
    done
fi

failed=()
for release in "${releases[@]}"; do
    start=$SECONDS
    echo
    echo "=== ansible-core $release"
    if [[ ! -f $here/requirements-$release.txt ]]; then
        echo "compat: no tests/compat/requirements-$release.txt" >&2
        failed+=("$release")
        continue
    fi
    python=""
    for want in $(pythons_of "$release"); do
        python=$(find_python "$want") && break
    done
    if [[ -z $python ]]; then
        echo "compat: ansible-core $release needs Python $(pythons_of "$release" | sed 's/ / or /g'), and none was found" \
            "(looked in pyenv's versions and the PATH); install one, e.g. 'pyenv install $(pythons_of "$release" | cut -d' ' -f1)'" >&2
        failed+=("$release")
        continue
    fi
    venv=$(venv_for "$release" "$python") || { failed+=("$release"); continue; }
    # the pip-installed tools of the venv first (ansible-playbook, ansible-test)
    export PATH="$venv/bin:$PATH"
    echo "compat: ansible-core $("$venv/bin/python" -c 'from ansible.release import __version__; print(__version__)'), $("$venv/bin/python" --version)"
    rc=0
    echo "--- unit tests and tests/compat"
    "$venv/bin/python" -m pytest -q -p no:cacheprovider tests/unit tests/compat || rc=1
    # pylint is the slowest sanity test and its rules are the least release-specific: the sanity stage
    # runs it with the main release; here every other test of this release runs
    echo "--- ansible-test sanity (but pylint)"
    PYTHON=$venv/bin/python tests/sanity/run.sh --skip-test pylint || rc=1
    PATH=${PATH#"$venv/bin:"}
    echo "=== ansible-core $release: $( ((rc == 0)) && echo PASS || echo FAIL) in $((SECONDS - start)) s"
    ((rc == 0)) || failed+=("$release")
done

if ((${#failed[@]})); then
    echo "compat: FAILED: ${failed[*]}" >&2
    exit 1
fi
echo "compat: ${releases[*]}: all passed"
