//! `--kubeconfig` and `--context`: which cluster the commands that read one talk to
//! (`run`, and `--cluster` of the offline commands). Without them, kube's usual
//! inference: `$KUBECONFIG`, `~/.kube/config`, then the in-cluster configuration.

use std::path::PathBuf;
use std::sync::OnceLock;

use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

/// The kubeconfig file and context given on the command line.
#[derive(Clone, Debug, Default, clap::Args)]
pub struct KubeconfigArgs {
    /// The kubeconfig file to use (instead of $KUBECONFIG or ~/.kube/config).
    #[arg(long, value_name = "PATH", global = true)]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use (instead of its current-context).
    #[arg(long, value_name = "NAME", global = true)]
    pub context: Option<String>,
}

static CHOSEN: OnceLock<KubeconfigArgs> = OnceLock::new();

/// Records the choice for the whole process (the first call wins).
pub fn choose(args: &KubeconfigArgs) {
    let _ = CHOSEN.set(args.clone());
}

/// The Kubernetes configuration chosen on the command line, or the inferred one.
pub async fn config() -> Result<Config, kube::Error> {
    let chosen = CHOSEN.get().cloned().unwrap_or_default();
    let options = KubeConfigOptions { context: chosen.context.clone(), ..Default::default() };
    match (&chosen.kubeconfig, &chosen.context) {
        (Some(path), _) => Ok(Config::from_custom_kubeconfig(Kubeconfig::read_from(path)?, &options).await?),
        (None, Some(_)) => Ok(Config::from_kubeconfig(&options).await?),
        (None, None) => Config::infer().await.map_err(kube::Error::InferConfig),
    }
}

/// A client for the chosen cluster.
pub async fn client() -> Result<Client, kube::Error> {
    Client::try_from(config().await?)
}
