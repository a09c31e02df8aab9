//! Istio config kinds.
