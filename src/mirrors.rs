//! Where pinned files can be downloaded from: --mirror, HERMETIC_MIRRORS, snapshot.debian.org, and the host's apt configuration.
