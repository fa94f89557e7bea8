"""Disposable libvirt/QEMU test lab for the kvm.snapshots collection (see lab.py)."""
