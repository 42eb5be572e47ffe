//! Booting images under QEMU with OVMF and swtpm.
