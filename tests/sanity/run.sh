#!/usr/bin/env bash
# Run `ansible-test sanity` on this collection.
#
# Usage: tests/sanity/run.sh [ansible-test sanity options...]
#   e.g. tests/sanity/run.sh --test pep8 --test validate-modules
#
# ansible-test wants the collection at .../ansible_collections/kvm/snapshots
# inside a git work tree, so this copies the repository's files (tracked, and
# untracked ones that .gitignore does not exclude: work in progress is tested
# too) into a temporary tree of that shape, makes it a git work tree, and runs
# ansible-test there with the Python that runs this script's `python3`
# (override with PYTHON=...). The temporary tree is removed afterwards;
# results are copied back to tests/output/ in the repository.
#
# Environment:
#   PYTHON                    Python to use (default: python3)
#   SANITY_KEEP_TREE=1        keep the temporary tree (path is printed)
#   SANITY_NO_GET_PIP_STANDIN=1  never seed ansible-test's get-pip cache
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
python=${PYTHON:-python3}
start=$SECONDS

pyver=$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
scripts=$("$python" -c 'import sysconfig; print(sysconfig.get_path("scripts"))')
ansible_test="$scripts/ansible-test"
if [[ ! -x $ansible_test ]]; then
    echo "sanity: ansible-test not found next to $python ($ansible_test); install requirements-test.txt" >&2
    exit 2
fi

# ansible-test bootstraps pip in every sanity venv with a get-pip script it
# downloads once into ~/.ansible/test/cache/. Where that download host is not
# reachable (only the package index is), seed the cache with a stand-in that
# uses ensurepip + the configured index instead. Never overwrite a real one.
if [[ -z ${SANITY_NO_GET_PIP_STANDIN:-} ]]; then
    pip_version=$("$python" - <<'PY'
import os, re, ansible_test
path = os.path.join(os.path.dirname(ansible_test.__file__), '_internal', 'python_requirements.py')
with open(path, encoding='utf-8') as f:
    match = re.search(r"""\bpip=['"]([0-9][^'"]*)['"]""", f.read())
print(match.group(1) if match else '')
PY
)
    if [[ -z $pip_version ]]; then
        echo "sanity: could not read the pip version ansible-test bootstraps; not seeding get-pip" >&2
    else
        cache="$HOME/.ansible/test/cache/get_pip_${pip_version//./_}.py"
        if [[ ! -e $cache ]]; then
            mkdir -p "$(dirname "$cache")"
            cp "$here/get_pip_standin.py" "$cache"
            echo "sanity: seeded $cache with tests/sanity/get_pip_standin.py (pip $pip_version from the package index)"
        fi
    fi
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/kvm-snapshots-sanity.XXXXXX")
# shellcheck disable=SC2317  # called by the EXIT trap
cleanup() {
    if [[ -n ${SANITY_KEEP_TREE:-} ]]; then
        echo "sanity: kept $work"
    else
        rm -rf "$work"
    fi
}
trap cleanup EXIT

dest="$work/ansible_collections/kvm/snapshots"
mkdir -p "$dest"
count=0
while IFS= read -r -d '' file; do
    # tracked files deleted in the work tree are listed too: skip them
    [[ -e $root/$file || -L $root/$file ]] || continue
    mkdir -p "$dest/$(dirname "$file")"
    cp -P "$root/$file" "$dest/$file"
    count=$((count + 1))
done < <(git -C "$root" ls-files -z --cached --others --exclude-standard)
echo "sanity: copied $count files to $dest"

git -C "$dest" init -q
git -C "$dest" add -A

rc=0
(cd "$dest" && "$ansible_test" sanity --local --python "$pyver" "$@") || rc=$?

if [[ -d $dest/tests/output ]]; then
    mkdir -p "$root/tests/output"
    cp -r "$dest/tests/output/." "$root/tests/output/"
fi
echo "sanity: finished in $((SECONDS - start)) s (exit $rc)"
exit "$rc"
