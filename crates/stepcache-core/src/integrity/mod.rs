//! The pure halves of integrity checks: which artifacts a hit serves and how to ask for them
//! (`artifacts`, `sigv4`), and whether an image tag moved since an entry ran (`images`).

pub mod artifacts;
pub mod images;
pub mod sigv4;
