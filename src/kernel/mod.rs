//! The kernel built from Debian's source: config fragments, the drop report, patches, the build.
