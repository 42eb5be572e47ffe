//! Debian metadata: versions, deb822 paragraphs, relations, and the dependency resolver.
//!
//! - [`version`]: `[epoch:]upstream[-revision]` with dpkg's exact ordering.
//! - [`deb822`]: paragraphs of `Field: value` lines (`Packages`, `Sources`, `Release`).
//! - [`relation`]: `Depends`-style fields, with architecture and build-profile restrictions.
//! - [`resolve`]: package and source indexes, and the resolver that mirrors
//!   `apt-get install --no-install-recommends` (rules in `docs/resolver.md`).

pub mod deb822;
pub mod relation;
pub mod resolve;
pub mod version;

pub use deb822::{Deb822Error, Paragraph};
pub use relation::{
    Alternatives, Op, Relation, RelationError, parse_relations, parse_relations_for_arch,
    parse_relations_with,
};
pub use resolve::{
    BinaryPackage, PackageIndex, Resolution, ResolveError, ResolveOptions, SourceFile, SourceIndex,
    SourcePackage, resolve,
};
pub use version::{Version, VersionError};
