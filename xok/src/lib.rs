//! xok
