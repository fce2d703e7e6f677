//! Present only so that the userspace crate can name this package as a build dependency
//! (cargo then rebuilds it when this crate changes); the programs are in the two objects'
//! roots, `main.rs` and `btf.rs`, and their modules (`programs/` for the hooks).
#![no_std]
