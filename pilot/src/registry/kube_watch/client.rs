//! A client for the API server, found as Istio finds one: `--kubeconfig`, else the
//! kubeconfig search (`$KUBECONFIG`, `~/.kube/config`), else in-cluster (the
//! ServiceAccount token and `KUBERNETES_SERVICE_HOST`).

use std::path::Path;

use kube::config::{KubeConfigOptions, Kubeconfig};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("reading kubeconfig {path}: {source}")]
    Kubeconfig {
        path: String,
        #[source]
        source: kube::config::KubeconfigError,
    },
    #[error("no Kubernetes configuration found (give --kubeconfig, or run in a cluster): {0}")]
    Infer(#[source] kube::config::InferConfigError),
    #[error("creating the Kubernetes client: {0}")]
    Client(#[source] kube::Error),
}

pub async fn connect(kubeconfig: Option<&Path>) -> Result<kube::Client, ClientError> {
    // kube-client takes rustls' process-wide provider; naming ring keeps that
    // unambiguous should another crate in the build enable a second provider.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let config = match kubeconfig {
        Some(path) => {
            let failed = |source| ClientError::Kubeconfig {
                path: path.display().to_string(),
                source,
            };
            let file = Kubeconfig::read_from(path).map_err(failed)?;
            kube::Config::from_custom_kubeconfig(file, &KubeConfigOptions::default())
                .await
                .map_err(failed)?
        }
        None => kube::Config::infer().await.map_err(ClientError::Infer)?,
    };
    kube::Client::try_from(config).map_err(ClientError::Client)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_missing_kubeconfig_names_the_file() {
        let Err(err) = connect(Some(Path::new("/nonexistent/kubeconfig"))).await else {
            panic!("connected without a kubeconfig");
        };
        assert!(err.to_string().contains("/nonexistent/kubeconfig"), "{err}");
    }
}
