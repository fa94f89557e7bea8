#!/usr/bin/env bash
# The test command of the kvm.snapshots collection: ./tests/run.sh
#
# On a fresh Debian 12 machine, as root, it installs what the tests need
# (Debian packages through tests/lab/lab.py, Python packages from
# requirements-test.txt), brings up the test lab when a stage needs it, runs
# every stage, cleans the lab up, prints a summary and exits non-zero if any
# stage failed. Every stage runs even when an earlier one failed.
#
# Stages, in order:
#   unit         python3 -m pytest tests/unit (libvirt's test:///default driver)
#   sanity       tests/sanity/run.sh (ansible-test sanity, no ignore entries)
#   lint         ansible-lint, production profile, on the whole repository (roles, playbooks, demo, galaxy.yml)
#   changelog    antsibull-changelog lint (fragments and changelog.yaml)
#   build        ansible-galaxy collection build + install + ansible-doc of each module, inventory and filter plugin and role
#                + ansible-builder create of execution-environment.yml (the build context checked; no image built)
#                + galaxy-importer (Galaxy's and Automation Hub's upload checks, its ansible-lint on; its own cached venv)
#   compat       tests/compat (a module failure is a plain message) with this Python's ansible-core, then
#                tests/compat/run.sh: ansible-core 2.16 (Python 3.11) and the newest release (Python 3.13 or 3.12),
#                each in a cached venv: unit tests, tests/compat, ansible-test sanity of that release
#   integration  python3 -m pytest tests/integration (real libvirtd + QEMU from the lab), on two stacks:
#                bookworm: this machine's libvirtd (Debian 12, libvirt 9.0): every test;
#                trixie: Debian 13's libvirtd (11.3) in the lab's cached chroot: every test but
#                test_faults_*.py and test_runner.py (KSLAB_STACK=trixie); one summary line per stack.
#                With both stacks the two run side by side (KSLAB_STACKS_IN_TURN=1: one after the other)
#
# Options:
#   --only LIST     run only these stages (comma-separated), e.g. --only unit,sanity
#   --skip LIST     run all stages but these
#   --no-install    do not install Debian or Python packages (they are already there)
#   --stacks LIST   the stacks of the integration stage (default bookworm,trixie)
#   --keep-lab      leave the lab's domains and daemons in place at the end
#                   (by default, if this run started libvirtd, it removes
#                   every lab domain and stops the daemons; if libvirtd was
#                   already running, it leaves both to whoever started them;
#                   the same for the trixie chroot's daemons and mounts)
#   -h, --help      show this help
#
# Environment: PYTHON (default python3) is the Python used for everything.
set -euo pipefail

ALL_STAGES=(unit sanity lint changelog build compat integration)
ALL_STACKS=(bookworm trixie)
# the tests that do not run on the trixie stack: test_faults_*.py drive the host's own libvirtd; test_runner.py
# checks what ansible-runner (AWX's engine) reports, which does not depend on the libvirt stack
BOOKWORM_ONLY_TESTS=(test_faults_libvirtd.py test_faults_killed.py test_faults_concurrency.py test_faults_storage.py
    test_faults_files.py test_runner.py)

usage() {
    sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
}

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
PYTHON=${PYTHON:-python3}
export PYTHON
# the tools pip installs for that Python (ansible-lint, ansible-galaxy, ...) come first
PATH="$("$PYTHON" -c 'import sysconfig; print(sysconfig.get_path("scripts"))'):$PATH"
export PATH
export PIP_ROOT_USER_ACTION=ignore PIP_PROGRESS_BAR=off

only=""
skip=""
install=1
keep_lab=0
stacks_arg=bookworm,trixie
while (($#)); do
    case $1 in
        --only) only=${2:?--only needs a list}; shift 2 ;;
        --only=*) only=${1#*=}; shift ;;
        --skip) skip=${2:?--skip needs a list}; shift 2 ;;
        --skip=*) skip=${1#*=}; shift ;;
        --stacks) stacks_arg=${2:?--stacks needs a list}; shift 2 ;;
        --stacks=*) stacks_arg=${1#*=}; shift ;;
        --no-install) install=0; shift ;;
        --keep-lab) keep_lab=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "run.sh: unknown argument: $1 (see --help)" >&2; exit 2 ;;
    esac
done

known() { [[ " ${ALL_STAGES[*]} " == *" $1 "* ]]; }
for name in ${only//,/ } ${skip//,/ }; do
    known "$name" || { echo "run.sh: unknown stage '$name' (stages: ${ALL_STAGES[*]})" >&2; exit 2; }
done

stacks=()
for name in ${stacks_arg//,/ }; do
    [[ " ${ALL_STACKS[*]} " == *" $name "* ]] || { echo "run.sh: unknown stack '$name' (stacks: ${ALL_STACKS[*]})" >&2; exit 2; }
    stacks+=("$name")
done
on_stack() { [[ " ${stacks[*]} " == *" $1 "* ]]; }

stages=()
for name in "${ALL_STAGES[@]}"; do
    if [[ -n $only && ",$only," != *",$name,"* ]]; then continue; fi
    if [[ ",$skip," == *",$name,"* ]]; then continue; fi
    stages+=("$name")
done
selected() { [[ " ${stages[*]} " == *" $1 "* ]]; }

# --------------------------------------------------------------------------
# Bookkeeping: every step gets a line in the summary.
# --------------------------------------------------------------------------
summary_names=()
summary_results=()
summary_seconds=()
failed=()

record() {  # record NAME RESULT SECONDS
    summary_names+=("$1")
    summary_results+=("$2")
    summary_seconds+=("$3")
    if [[ $2 == FAIL ]]; then failed+=("$1"); fi
}

# step NAME FUNCTION: run FUNCTION, time it, record PASS/FAIL/SKIP.
# A function returns 0 (pass), 99 (skip: it printed why) or anything else (fail).
step() {
    local name=$1 fn=$2 start rc=0
    start=$SECONDS
    echo
    echo "==> [$name] starting at $(date '+%H:%M:%S')"
    "$fn" || rc=$?
    step_done "$name" "$rc" $((SECONDS - start))
}

step_done() {  # step_done NAME EXIT SECONDS: record and show the end of a step
    local result
    case $2 in
        0) result=PASS ;;
        99) result=SKIP ;;
        *) result=FAIL ;;
    esac
    record "$1" "$result" "$3"
    echo "<== [$1] $result in $3 s (exit $2)"
}

lab() {
    "$PYTHON" tests/lab/lab.py "$@" </dev/null
}
have_lab() { [[ -f tests/lab/lab.py ]]; }

# pytest exits 5 when it collected no test: that is a failure here.
run_pytest() {
    local rc=0
    "$PYTHON" -m pytest "$@" || rc=$?
    if ((rc == 5)); then
        echo "run.sh: pytest collected no test in $*: counted as a failure" >&2
    fi
    return "$rc"
}

# pytest-ansible links the repository's top-level entries into
# collections/ansible_collections/kvm/snapshots once, the first time pytest
# runs from the root. Drop that link farm so it is made anew and sees
# top-level entries added since (only if it holds nothing but symlinks).
refresh_link_farm() {
    local farm=collections/ansible_collections/kvm/snapshots
    if [[ -d $farm && ! -L $farm ]] && [[ -z $(find "$farm" -mindepth 1 -maxdepth 1 ! -type l -print -quit) ]]; then
        rm -rf "$farm"
    fi
}

has_tests() {  # has_tests DIR: does DIR hold pytest test files?
    [[ -d $1 ]] && [[ -n $(find "$1" \( -name 'test_*.py' -o -name '*_test.py' \) -print -quit) ]]
}

# Temporary directories, removed on exit. new_tmp NAME sets $tmp_dir (not
# through $(...): a subshell could not add to tmp_dirs).
tmp_dirs=()
tmp_dir=""
new_tmp() {
    tmp_dir=$(mktemp -d "${TMPDIR:-/tmp}/kvm-snapshots-$1.XXXXXX")
    tmp_dirs+=("$tmp_dir")
}

# --------------------------------------------------------------------------
# Setup
# --------------------------------------------------------------------------
apt_updated=0
apt_install() {  # apt_install PKG...: install the ones not installed yet
    local missing=() pkg
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
    done
    ((${#missing[@]})) || return 0
    if ! command -v apt-get >/dev/null || ((EUID != 0)); then
        echo "run.sh: please install: ${missing[*]}" >&2
        return 1
    fi
    echo "run.sh: apt-get install ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    if ((apt_updated == 0)); then
        apt-get update -qq
        apt_updated=1
    fi
    apt-get install -y -qq --no-install-recommends "${missing[@]}" </dev/null
}

do_install() {
    local rc=0
    if have_lab; then
        lab deps || rc=$?
    else
        echo "run.sh: tests/lab/lab.py not found; installing the build packages of libvirt-python only"
        apt_install gcc pkg-config libvirt-dev || rc=$?
    fi
    # ansible-test's shellcheck sanity test is skipped when shellcheck is missing
    if selected sanity; then
        apt_install shellcheck || rc=$?
    fi
    # the report test renders index.html with headless Chromium (tests/integration/test_report.py)
    if selected integration; then
        apt_install chromium || rc=$?
    fi
    "$PYTHON" -m pip install --quiet -r requirements-test.txt || rc=$?
    return "$rc"
}

# Did libvirtd run before this run started the lab? Then leave it running.
libvirtd_running() {
    local pid
    pid=$(cat /run/libvirtd.pid 2>/dev/null) || return 1
    [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null
}

# Did the trixie chroot's libvirtd run before this run? Then leave it (and its mounts) running.
stack_running() {
    "$PYTHON" -c 'import sys; sys.path.insert(0, "tests/lab"); import lab; sys.exit(0 if lab.stack_running(sys.argv[1]) else 1)' "$1"
}

lab_up=0
daemons_were_running=0
stack_up=0
stack_was_running=0
do_lab() {
    if ! have_lab; then
        echo "run.sh: tests/lab/lab.py not found: no lab"
        return 99
    fi
    lab_up=1
    if libvirtd_running; then daemons_were_running=1; fi
    lab daemons || return $?
    lab image || return $?
}

# The trixie stack: a Debian 13 chroot (built once, about a minute or four, cached in
# /var/cache/kvm-snapshots-lab) with its own virtlogd and libvirtd.
do_lab_trixie() {
    if ! have_lab; then
        echo "run.sh: tests/lab/lab.py not found: no lab"
        return 99
    fi
    if stack_running trixie; then stack_was_running=1; fi
    stack_up=1
    lab stack --name trixie || return $?
}

cleanup_done=0
cleanup_lab() {
    ((cleanup_done == 0)) || return 0
    cleanup_done=1
    if ((lab_up == 0)) || ! have_lab; then return 0; fi
    if ((keep_lab == 1)); then
        echo "run.sh: --keep-lab: leaving the lab as it is"
        return 0
    fi
    local start=$SECONDS rc=0
    echo
    echo "==> [lab cleanup]"
    if ((stack_up == 1 && stack_was_running == 0)); then
        # its lab domains, its daemons (by pid) and its mounts
        lab stack-stop --name trixie || rc=$?
    fi
    if ((daemons_were_running == 0)); then
        lab cleanup || rc=$?
        lab daemons-stop || rc=$?
    else
        # someone else may be using the lab (lab.py cleanup removes every
        # lab domain, not only this run's): the integration tests remove
        # their own domains; leave the rest alone
        echo "run.sh: libvirtd was running before this run: leaving it and other lab domains alone"
        echo "run.sh: (python3 tests/lab/lab.py cleanup removes every lab domain)"
    fi
    local result=PASS
    if ((rc != 0)); then result=FAIL; fi
    record lab-cleanup "$result" $((SECONDS - start))
    echo "<== [lab cleanup] $result in $((SECONDS - start)) s"
}

on_exit() {
    local rc=$?
    # an interrupted run: the stack running beside (integration_side_by_side) is stopped by its pid first
    if [[ -n $side_pid ]] && kill -0 "$side_pid" 2>/dev/null; then
        pkill -TERM -P "$side_pid" || true
        wait "$side_pid" 2>/dev/null || true
    fi
    cleanup_lab || true
    if ((${#tmp_dirs[@]})); then rm -rf "${tmp_dirs[@]}"; fi
    return "$rc"
}
side_pid=""
trap on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --------------------------------------------------------------------------
# Stages
# --------------------------------------------------------------------------
stage_unit() {
    refresh_link_farm
    run_pytest tests/unit
}

stage_sanity() {
    tests/sanity/run.sh
}

stage_lint() {
    local colls rc=0
    # The whole repository, as a plain `ansible-lint` from the root sees it (.ansible-lint excludes
    # what is not Ansible content). Offline here: point ansible-lint at this working tree instead of
    # letting it link the collection into .ansible/.
    new_tmp collections
    colls=$tmp_dir
    mkdir -p "$colls/ansible_collections/kvm"
    ln -s "$root" "$colls/ansible_collections/kvm/snapshots"
    ANSIBLE_COLLECTIONS_PATH="$colls" ansible-lint --offline || rc=$?
    return "$rc"
}

stage_changelog() {
    antsibull-changelog lint || return $?
    antsibull-changelog lint-changelog-yaml changelogs/changelog.yaml || return $?
    echo "changelog fragments and changelogs/changelog.yaml are valid"
}

# The execution environment (execution-environment.yml): ansible-builder create writes the build context (no
# container engine here, so no build), which must name the base image and hold the collection with its
# requirements.txt, bindep.txt and meta/execution-environment.yml; builder's own introspection, run on the
# collection installed from the tarball, must find those dependencies as the builder stage of an image would.
check_ee() {  # check_ee WORK: WORK/collections holds the installed tarball
    local ctx=$1/ee-context base file
    [[ -f execution-environment.yml ]] || return 0
    echo "--- ansible-builder create -f execution-environment.yml"
    ansible-builder create -f execution-environment.yml --context "$ctx" --output-filename Containerfile || return 1
    base=$("$PYTHON" -c 'import yaml; print(yaml.safe_load(open("execution-environment.yml"))["images"]["base_image"]["name"])')
    grep -qxF "ARG EE_BASE_IMAGE=\"$base\"" "$ctx/Containerfile" || { echo "Containerfile does not name $base" >&2; return 1; }
    for file in galaxy.yml requirements.txt bindep.txt meta/execution-environment.yml meta/runtime.yml plugins/modules/snapshot.py; do
        cmp "$file" "$ctx/_build/kvm_snapshots/$file" || { echo "_build/kvm_snapshots/$file differs or is missing" >&2; return 1; }
    done
    grep -qF '/build/kvm_snapshots' "$ctx/_build/requirements.yml" || { echo "_build/requirements.yml does not install the collection" >&2; return 1; }
    "$PYTHON" "$ctx/_build/scripts/introspect.py" introspect "$1/collections" \
        --write-pip "$1/ee-pip.txt" --write-bindep "$1/ee-bindep.txt" >/dev/null || return 1
    if ! { grep -q '^libvirt-python.*# from collection kvm.snapshots' "$1/ee-pip.txt" &&
        grep -q '^libvirt-devel \[compile platform:rpm\].*# from collection kvm.snapshots' "$1/ee-bindep.txt" &&
        grep -q '^libvirt-libs \[platform:rpm\].*# from collection kvm.snapshots' "$1/ee-bindep.txt"; }; then
        echo "introspection of the installed collection misses its dependencies:" >&2
        cat "$1"/ee-*.txt >&2
        return 1
    fi
    echo "build context: Containerfile FROM $base; the collection, its requirements.txt and bindep.txt in _build; introspection finds them"
}

documented_content() {  # "TYPE NAME" of each documented plugin and role of the work tree
    local path
    for path in plugins/modules/*.py plugins/inventory/*.py plugins/filter/*.yml roles/*/meta/argument_specs.yml; do
        [[ -f $path ]] || continue
        case $path in
            plugins/modules/*) echo "module $(basename "$path" .py)" ;;
            plugins/inventory/*) echo "inventory $(basename "$path" .py)" ;;
            plugins/filter/*) echo "filter $(basename "$path" .yml)" ;;
            roles/*) echo "role $(basename "$(dirname "$(dirname "$path")")")" ;;
        esac
    done
}

# galaxy-importer, what Galaxy and Automation Hub run on an uploaded tarball, with the configuration of
# tests/galaxy-importer.cfg (its ansible-lint check on; ansible-test off: it needs a container engine). In a venv
# of its own (its pins stay out of this Python's), cached by version in the lab's cache (tests/output if that is
# not writable). Any error or warning of the importer fails the stage, but one: the note that
# tests/sanity/ignore-*.txt exist, which they do, empty.
GALAXY_IMPORTER_VERSION=0.4.44
check_importer() {  # check_importer TARBALL WORK
    local cache=/var/cache/kvm-snapshots-lab venv key out=$2/importer.log rc=0 problems
    mkdir -p "$cache" 2>/dev/null && [[ -w $cache ]] || cache=$root/tests/output
    key=$("$PYTHON" -VV | sha256sum | cut -c1-12)
    venv=$cache/galaxy-importer-$GALAXY_IMPORTER_VERSION-$key
    if [[ ! -f $venv/.complete ]]; then
        rm -rf "$cache/galaxy-importer-"*
        echo "--- building $venv"
        { "$PYTHON" -m venv "$venv" && "$venv/bin/python" -m pip install --quiet "galaxy-importer==$GALAXY_IMPORTER_VERSION"; } ||
            { rm -rf "$venv"; return 1; }
        touch "$venv/.complete"
    fi
    echo "--- galaxy-importer $GALAXY_IMPORTER_VERSION $(basename "$1")"
    # the importer finds ansible-lint and ansible-doc on the PATH: its venv's
    (cd "$2" && PATH="$venv/bin:$PATH" GALAXY_IMPORTER_CONFIG="$root/tests/galaxy-importer.cfg" \
        "$venv/bin/python" -m galaxy_importer.main "$1") >"$out" 2>&1 || rc=$?
    grep -v '^Loading ' "$out" | grep -v '^[[:space:]]*$' || true
    problems=$(grep -E '^(WARNING|ERROR|CRITICAL)' "$out" |
        grep -vE '^WARNING: Ignore files skip ansible-test sanity tests, found ignore-[0-9.]+\.txt with 0 statement\(s\)$' || true)
    if ((rc != 0)) || [[ -n $problems ]] || ! grep -qx 'Importer processing completed successfully' "$out"; then
        echo "galaxy-importer: exit $rc; its errors and warnings count as failures:" >&2
        [[ -z $problems ]] || echo "$problems" >&2
        return 1
    fi
}

stage_build() {
    local work tarball type name found=0 rc=0
    new_tmp build
    work=$tmp_dir
    ansible-galaxy collection build --output-path "$work/dist" . || return $?
    tarball=$(echo "$work"/dist/kvm-snapshots-*.tar.gz)
    echo "built $(basename "$tarball"): $(du -k "$tarball" | cut -f1) KiB, $(tar -tzf "$tarball" | wc -l) entries"
    ANSIBLE_COLLECTIONS_PATH="$work/collections" \
        ansible-galaxy collection install --offline -p "$work/collections" "$tarball" || return $?
    # ansible-doc of every module, inventory and filter plugin and role, from the installed copy only,
    # away from the work tree
    while read -r type name; do
        found=1
        echo "--- ansible-doc -t $type kvm.snapshots.$name"
        # ansible-doc exits 0 for a plugin it cannot find or read: an empty page is a failure too
        if (cd "$work" && ANSIBLE_COLLECTIONS_PATH="$work/collections" ansible-doc -t "$type" "kvm.snapshots.$name" >"$work/doc.txt") &&
            [[ -s $work/doc.txt ]]; then
            head -n 3 "$work/doc.txt"
        else
            rc=1
        fi
    done < <(documented_content)
    check_ee "$work" || rc=1
    check_importer "$tarball" "$work" || rc=1
    ((found == 1)) || echo "run.sh: no plugin or role to document yet"
    return "$rc"
}

stage_compat() {
    local rc=0
    echo "--- tests/compat with this Python's ansible-core"
    run_pytest -q -p no:cacheprovider tests/compat || rc=1
    tests/compat/run.sh || rc=1
    return "$rc"
}

stage_integration_bookworm() {
    if ! has_tests tests/integration; then
        echo "run.sh: tests/integration has no tests yet"
        return 99
    fi
    if ((lab_ok == 0)); then
        echo "run.sh: the lab did not come up (see [lab] above)" >&2
        return 1
    fi
    # --durations: every CI log shows where the integration time goes (the slowest 25 tests)
    KSLAB_STACK=bookworm run_pytest --durations=25 tests/integration
}

stage_integration_trixie() {
    local files=() name
    if ((lab_ok == 0 || lab_trixie_ok == 0)); then
        echo "run.sh: the lab or its trixie stack did not come up (see [lab] and [lab-trixie] above)" >&2
        return 1
    fi
    for name in tests/integration/test_*.py; do
        [[ " ${BOOKWORM_ONLY_TESTS[*]} " == *" $(basename "$name") "* ]] || files+=("$name")
    done
    KSLAB_STACK=trixie run_pytest --durations=25 "${files[@]}"
}

# The two stacks' integration tests run side by side, one summary line each. Alone, a stack keeps the 2 CPUs
# at a load of about 1: its time goes to waiting for libvirtd, QEMU, guest agents and ansible-playbook start-ups.
# The stacks share nothing but the machine: each has its own libvirtd, its own domain name prefix, run files and
# guest templates, and every sshd of the tests takes a free port. The trixie run's output goes to a file and is
# shown after the bookworm run's, so the log reads one stack at a time. KSLAB_STACKS_IN_TURN=1 runs them one after
# the other (to tell a problem of the tests from one of running them side by side).
integration_side_by_side() {
    local out start
    new_tmp integration-trixie
    out=$tmp_dir
    start=$SECONDS
    echo
    echo "==> [integration-trixie] starting at $(date '+%H:%M:%S'), beside integration-bookworm (its output follows)"
    (
        rc=0
        stage_integration_trixie >"$out/log" 2>&1 </dev/null || rc=$?
        echo "$rc" >"$out/rc"
    ) &
    side_pid=$!
    step integration-bookworm stage_integration_bookworm
    wait "$side_pid" || true
    echo
    echo "==> [integration-trixie] output (it ran beside integration-bookworm)"
    cat "$out/log"
    step_done integration-trixie "$(cat "$out/rc" 2>/dev/null || echo 1)" $((SECONDS - start))
}

# --------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------
total_start=$SECONDS
echo "run.sh: stages: ${stages[*]:-(none)}; python: $(command -v "$PYTHON") ($("$PYTHON" --version 2>&1)); CI=${CI:-}"

if ((install == 1)); then
    step install do_install
fi

lab_ok=0
lab_trixie_ok=0
if selected integration && has_tests tests/integration; then
    step lab do_lab
    [[ ${summary_results[-1]} == PASS ]] && lab_ok=1
    if on_stack trixie; then
        step lab-trixie do_lab_trixie
        [[ ${summary_results[-1]} == PASS ]] && lab_trixie_ok=1
    fi
fi

for name in "${stages[@]}"; do
    if [[ $name == integration ]]; then
        refresh_link_farm   # once: side by side, both stacks' pytest use it
        if on_stack bookworm && on_stack trixie && [[ ${KSLAB_STACKS_IN_TURN:-0} != 1 ]]; then
            integration_side_by_side
        else
            for stack in "${stacks[@]}"; do
                step "integration-$stack" "stage_integration_$stack"
            done
        fi
        continue
    fi
    step "$name" "stage_$name"
done

cleanup_lab

echo
echo "==================== tests/run.sh summary ===================="
printf '%-20s %-6s %8s\n' step result seconds
for i in "${!summary_names[@]}"; do
    printf '%-20s %-6s %8s\n' "${summary_names[$i]}" "${summary_results[$i]}" "${summary_seconds[$i]}"
done
printf '%-20s %-6s %8s\n' total "" $((SECONDS - total_start))
if ((${#failed[@]})); then
    echo "tests/run.sh: FAILED: ${failed[*]}"
    exit 1
fi
echo "tests/run.sh: all steps ok"
