//! Stat bundles: structs of handles created together under one scope
//! (`http.<stat_prefix>.`, `listener.<address>.`, ...), each field named as the Envoy
//! stat it is.

/// Declares a bundle whose fields are counters, gauges and histograms named
/// `<scope>.<field>`.
macro_rules! stat_bundle {
    (
        $(#[$meta:meta])*
        pub struct $name:ident {
            counters: [$($c:ident),* $(,)?],
            gauges: [$($g:ident),* $(,)?],
            histograms: [$($h:ident),* $(,)?] $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Debug)]
        pub struct $name {
            $(pub $c: $crate::stats::Counter,)*
            $(pub $g: $crate::stats::Gauge,)*
            $(pub $h: $crate::stats::Histogram,)*
        }

        impl $name {
            /// Creates (or finds) every stat of the bundle under `scope`.
            pub fn new(store: &$crate::stats::Store, scope: &str) -> $name {
                $name {
                    $($c: store.counter(&format!("{scope}.{}", stringify!($c))),)*
                    $($g: store.gauge(&format!("{scope}.{}", stringify!($g))),)*
                    $($h: store.histogram(&format!("{scope}.{}", stringify!($h))),)*
                }
            }
        }
    };
}

pub(crate) use stat_bundle;
