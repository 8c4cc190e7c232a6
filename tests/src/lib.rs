//! Integration suite for giva; the tests live in `tests/tests/`.
