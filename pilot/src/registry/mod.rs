//! Service registries: where services and endpoints come from.

pub mod kube;
pub mod kube_convert;
pub mod serviceentry;
