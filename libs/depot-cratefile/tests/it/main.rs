//! Integration tests for `depot-cratefile`: one rule per test, asserting the exact message a
//! cargo user would see.

mod consistency;
mod docs;
mod fixtures;
mod publish;
mod tarball;
