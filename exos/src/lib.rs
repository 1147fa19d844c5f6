//! exos
