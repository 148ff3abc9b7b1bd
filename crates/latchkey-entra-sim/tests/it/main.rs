//! Integration tests: a real simulator on a random port, driven over HTTP.

mod directory;
mod faults;
mod helpers;
mod identity;
mod mutations;
mod signin;
mod sync;
