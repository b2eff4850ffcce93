//! The shared AWS SDK configuration: what capstan's config says ([`AwsSettings`]), and
//! the loaded `SdkConfig` every client is made from ([`SharedConfig`]), and the
//! clients made from it on first use ([`LazyClient`]).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_sqs::config::{Credentials, SharedCredentialsProvider};
use tokio::sync::OnceCell;

/// The AWS settings of one source (or target): everything else comes from the
/// standard chain (environment, shared config and credentials files, SSO, web
/// identity, ECS task role, EC2 instance profile).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct AwsSettings {
    /// The region; `None` takes the standard chain's (`AWS_REGION`, profile, IMDS).
    pub region: Option<String>,
    /// Another endpoint for every service (moto, LocalStack, a VPC endpoint).
    pub endpoint_url: Option<String>,
    /// A named profile of the shared config files instead of the default one.
    pub profile: Option<String>,
    /// The longest a connection attempt may take.
    pub connect_timeout: Option<Duration>,
    /// The longest a whole call may take (`None`: no limit from the SDK).
    pub operation_timeout: Option<Duration>,
}

impl AwsSettings {
    /// Where calls go, for messages: the endpoint URL if set, else the region (or
    /// "default region").
    pub fn place(&self) -> String {
        match (&self.endpoint_url, &self.region) {
            (Some(url), _) => url.clone(),
            (None, Some(region)) => format!("region {region}"),
            (None, None) => "default region".to_owned(),
        }
    }
}

/// The SDK makes one attempt per call: capstan retries itself (the poller reads
/// again, the CloudWatch shipper keeps a failed batch), so a read's timeout and error
/// class stay its own.
fn retry_config() -> RetryConfig {
    RetryConfig::standard().with_max_attempts(1)
}

/// An `SdkConfig` loaded from [`AwsSettings`] on first use, then shared by every
/// client made from it. Cloning shares the same configuration.
#[derive(Clone)]
pub struct SharedConfig {
    inner: Arc<Inner>,
}

struct Inner {
    settings: AwsSettings,
    loaded: OnceCell<SdkConfig>,
}

impl fmt::Debug for SharedConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedConfig")
            .field("settings", &self.inner.settings)
            .field("loaded", &self.inner.loaded.initialized())
            .finish()
    }
}

impl SharedConfig {
    /// A configuration loaded from `settings` (and the standard chain) on first use.
    pub fn new(settings: AwsSettings) -> Self {
        Self {
            inner: Arc::new(Inner {
                settings,
                loaded: OnceCell::new(),
            }),
        }
    }

    /// A configuration that is already loaded (tests; an embedding program).
    pub fn ready(config: SdkConfig) -> Self {
        let settings = AwsSettings {
            region: config.region().map(|r| r.to_string()),
            endpoint_url: config.endpoint_url().map(str::to_owned),
            ..AwsSettings::default()
        };
        Self {
            inner: Arc::new(Inner {
                settings,
                loaded: OnceCell::new_with(Some(config)),
            }),
        }
    }

    /// The settings it was made from.
    pub fn settings(&self) -> &AwsSettings {
        &self.inner.settings
    }

    /// The loaded configuration (loading it on the first call).
    pub async fn get(&self) -> &SdkConfig {
        let settings = &self.inner.settings;
        self.inner
            .loaded
            .get_or_init(|| async move { load(settings).await })
            .await
    }
}

/// An SDK client (`aws_sdk_ecs::Client`, ...) made from a [`SharedConfig`] on first
/// use, so building one costs nothing until it is called. Clones share the config and
/// the client.
#[derive(Clone)]
pub struct LazyClient<C> {
    config: SharedConfig,
    client: Arc<OnceCell<C>>,
    make: fn(&SdkConfig) -> C,
}

impl<C> fmt::Debug for LazyClient<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LazyClient")
            .field("config", &self.config)
            .field("made", &self.client.initialized())
            .finish()
    }
}

impl<C> LazyClient<C> {
    /// A client made by `make` (the SDK's `Client::new`) from `config` on first use.
    pub fn new(config: SharedConfig, make: fn(&SdkConfig) -> C) -> Self {
        Self {
            config,
            client: Arc::new(OnceCell::new()),
            make,
        }
    }

    /// A client that is already made (tests with a replayed HTTP client); its config
    /// is an empty one.
    pub fn ready(client: C, make: fn(&SdkConfig) -> C) -> Self {
        Self {
            config: SharedConfig::ready(SdkConfig::builder().build()),
            client: Arc::new(OnceCell::new_with(Some(client))),
            make,
        }
    }

    /// The configuration it is made from.
    pub fn config(&self) -> &SharedConfig {
        &self.config
    }

    /// The client (made on the first call).
    pub async fn get(&self) -> &C {
        self.client
            .get_or_init(|| async { (self.make)(self.config.get().await) })
            .await
    }
}

/// Loads an `SdkConfig` from `settings` and the standard chain.
pub async fn load(settings: &AwsSettings) -> SdkConfig {
    let mut loader = aws_config::defaults(BehaviorVersion::latest()).retry_config(retry_config());
    if let Some(region) = &settings.region {
        loader = loader.region(Region::new(region.clone()));
    }
    if let Some(url) = &settings.endpoint_url {
        loader = loader.endpoint_url(url.clone());
    }
    if let Some(profile) = &settings.profile {
        loader = loader.profile_name(profile.clone());
    }
    if settings.connect_timeout.is_some() || settings.operation_timeout.is_some() {
        let mut timeouts = TimeoutConfig::builder();
        if let Some(connect) = settings.connect_timeout {
            timeouts = timeouts.connect_timeout(connect);
        }
        if let Some(operation) = settings.operation_timeout {
            timeouts = timeouts.operation_timeout(operation);
        }
        loader = loader.timeout_config(timeouts.build());
    }
    loader.load().await
}

/// An `SdkConfig` with fixed credentials, region and endpoint, and nothing read from
/// the environment or files (tests against moto; never for production credentials).
pub fn static_config(
    endpoint_url: &str,
    region: &str,
    access_key_id: &str,
    secret_access_key: &str,
) -> SdkConfig {
    let credentials = Credentials::new(access_key_id, secret_access_key, None, None, "static");
    SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(region.to_owned()))
        .endpoint_url(endpoint_url)
        .credentials_provider(SharedCredentialsProvider::new(credentials))
        .retry_config(retry_config())
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(3))
                .build(),
        )
        .build()
}
