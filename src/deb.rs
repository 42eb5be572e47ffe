//! Reading .deb files and extracting them safely.
