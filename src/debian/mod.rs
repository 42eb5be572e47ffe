//! Debian metadata: versions, deb822 paragraphs, relations, and the dependency resolver.
