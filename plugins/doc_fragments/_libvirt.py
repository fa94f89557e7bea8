# Copyright (c) 2026, kvm.snapshots contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This doc fragment is PRIVATE to the kvm.snapshots collection.
# It may change without notice; do not use it from other collections.

from __future__ import annotations


class ModuleDocFragment:

    # The connection options every module shares.
    DOCUMENTATION = r'''
options:
  uri:
    description:
      - The libvirt connection URI.
      - V(qemu:///system) talks to the libvirtd of the machine the module runs on (the hypervisor,
        reached by Ansible over SSH or with C(delegate_to)).
      - A remote URI such as V(qemu+ssh://root@hv1/system?keyfile=/root/.ssh/id_ed25519) lets the module
        run on the controller, so the hypervisor needs no Python libvirt binding.
      - A password in the user part of the URI (C(user:password@host)) is masked (C(********)) in every message,
        in libvirt's own error text and in C(invocation.module_args), whatever characters it holds. The option is
        not C(no_log), which would hide the hypervisor in every message; the module registers the password
        itself (as written and percent-decoded) as a value Ansible must never show. libvirt itself cannot read a
        URI whose password holds C(/), C(?), C(#), C(@) or C([) unencoded; write them percent-encoded.
      - Checked before libvirt is asked. An empty URI is refused (libvirt would pick a default hypervisor of
        its own), and so are a driver or a transport libvirt does not have and a port that is not 1 to 65535,
        each with what is wrong, instead of libvirt's report of a connection that broke.
    type: str
    default: qemu:///system
    aliases: [libvirt_uri]
  connect_timeout:
    description:
      - Seconds to wait for the connection to libvirt before failing with a clear message instead of hanging.
      - Also about how long libvirtd may stay silent during a call (hung, or its host unreachable) before the
        connection is given up as lost, by libvirt's keepalive messages; a long snapshot of a libvirtd that
        answers is not affected.
      - V(0) waits for ever.
    type: int
    default: 30
  busy_timeout:
    description:
      - Seconds to keep trying while another job holds the domain (another snapshot, a revert, a backup),
        which libvirt reports as a state change lock time-out.
      - libvirt itself waits about 30 seconds for the lock before each try fails; the last error, which names
        the job that holds the domain, is reported when the time is up.
    type: int
    default: 120
requirements:
  - libvirt-python (the Python binding of libvirt) for the Python that runs the module
    (Debian/Ubuntu package C(python3-libvirt), or C(pip install libvirt-python)).
notes:
  - The module talks to libvirt through libvirt-python only; it never runs a shell or C(virsh).
'''

    # The limit on jobs at once per hypervisor, of the modules that run snapshot jobs.
    JOBS = r'''
options:
  hypervisor_jobs:
    description:
      - At most this many jobs (take, revert or delete a snapshot) of kvm.snapshots modules at once against the
        hypervisor of O(uri), counted across every module run on the machine that runs the module (the
        hypervisor itself, or the controller that reaches hypervisors by remote URIs).
      - A job waits for its turn for up to O(hypervisor_jobs_timeout) seconds. Looking things up, check mode and
        runs that change nothing never wait.
      - Unlike Ansible's C(throttle), which counts the tasks of a whole batch whatever hypervisor their guests
        are on, this counts per hypervisor; runs of other users of the same machine are not counted.
      - V(0) sets no limit.
    type: int
    default: 0
  hypervisor_jobs_timeout:
    description:
      - Seconds a job waits for its turn under O(hypervisor_jobs) before the module fails, having changed nothing.
    type: int
    default: 3600
'''

    # Batch options of the modules that act on many domains in one run.
    BATCH = r'''
options:
  domain:
    description:
      - The libvirt name of the domain (virtual machine).
      - Exactly one of O(domain) and O(domains) is required.
    type: str
  domains:
    description:
      - Batch mode. Names or shell globs (V(web-*)) of many domains, handled in one module run,
        O(parallel) at a time.
      - Each domain gets its own entry in RV(results); one domain's failure fails the task
        but does not stop the others.
      - A glob that matches nothing is reported in RV(unmatched), not an error.
      - A pattern that is the exact name of a domain names that domain, even when it holds C(*), C(?) or C([)
        (a domain called C(web[1]) is named by V(web[1])); in a glob, V([*]), V([?]) and V([[]) match those
        characters themselves.
      - An empty list does nothing, with a warning.
    type: list
    elements: str
  parallel:
    description:
      - In batch mode, how many domains are worked on at the same time.
      - A snapshot with memory pauses its guest while QEMU writes the guest's RAM into the image, so each
        one at once adds a paused guest writing to the hypervisor's storage. The default suits a hypervisor
        that keeps serving its guests; raise it for small guests or fast storage (the benchmarks in the
        repository gain about 5 % from 4 to 8 with 64 MiB guests on 2 CPUs).
      - V(1) or less works on one domain after the other.
    type: int
    default: 4
'''

    ATTRIBUTES = r'''
attributes:
  action_group:
    description: Use C(group/kvm.snapshots.kvm) in C(module_defaults) to set defaults for this module.
    support: full
    membership:
      - kvm.snapshots.kvm
'''
