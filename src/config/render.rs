//! `--print-config`: the effective configuration, flags and namespaces.

use super::Config;

impl Config {
    /// The effective configuration, as `--print-config` shows it: every flag as a comment
    /// (secrets masked), then the namespaces as a file `--config` reads back.
    pub fn render(&self) -> String {
        let mut out = String::from("# tickrelay effective configuration\n");
        out.push_str("# flags (set with --flag or TICKRELAY_* variables):\n");
        let secret = |v: &Option<String>| if v.is_some() { "<set>" } else { "<unset>" };
        let mut flags: Vec<(&str, String)> = vec![
            ("listen", self.listen.to_string()),
            ("publish-key", secret(&self.publish_key).into()),
            ("demo", self.demo.to_string()),
            ("dashboard-public", self.dashboard_public.to_string()),
            ("shards", self.shard_count().to_string()),
            ("max-message-bytes", self.max_message_bytes.to_string()),
            ("max-batch-bytes", self.max_batch_bytes.to_string()),
            ("max-batch-items", self.max_batch_items.to_string()),
            ("max-subscriptions", self.max_subscriptions.to_string()),
            ("queue-bytes", self.queue_bytes.to_string()),
            ("max-connections", self.max_connections.to_string()),
            ("max-channels", self.max_channels.to_string()),
            ("channel-idle-secs", self.channel_idle_secs.to_string()),
            ("heartbeat-ms", self.heartbeat_ms.to_string()),
            (
                "handshake-timeout-ms",
                self.handshake_timeout_ms.to_string(),
            ),
            (
                "http-write-timeout-ms",
                self.http_write_timeout_ms.to_string(),
            ),
            ("max-header-bytes", self.max_header_bytes.to_string()),
            ("listen-backlog", self.listen_backlog.to_string()),
            ("close-timeout-ms", self.close_timeout_ms.to_string()),
            ("slow-close-grace-ms", self.slow_close_grace_ms.to_string()),
            ("shutdown-grace-ms", self.shutdown_grace_ms.to_string()),
            (
                "conflate-after-bytes",
                self.conflate_after_bytes.to_string(),
            ),
            ("lagging-notice-ms", self.lagging_notice_ms.to_string()),
            ("history-max-bytes", self.history_max_bytes.to_string()),
            ("jwt-secret", secret(&self.jwt_secret).into()),
            (
                "jwt-public-key",
                self.jwt_public_key
                    .as_ref()
                    .map_or("<unset>".into(), |p| p.display().to_string()),
            ),
            ("jwt-leeway-secs", self.jwt_leeway_secs.to_string()),
            (
                "jwt-audience",
                self.jwt_audience
                    .clone()
                    .unwrap_or_else(|| "<unset>".into()),
            ),
            (
                "jwt-issuer",
                self.jwt_issuer.clone().unwrap_or_else(|| "<unset>".into()),
            ),
            ("auth-timeout-ms", self.auth_timeout_ms.to_string()),
            (
                "allowed-origins",
                if self.allowed_origins.is_empty() {
                    "<any>".into()
                } else {
                    self.allowed_origins.join(",")
                },
            ),
            ("socketio-channels", self.socketio_channels.clone()),
            (
                "max-connections-per-ip",
                self.max_connections_per_ip.to_string(),
            ),
            ("trusted-reserve", self.trusted_reserve.to_string()),
            ("stats-cache-ms", self.stats_cache_ms.to_string()),
            ("max-response-bytes", self.max_response_bytes.to_string()),
            (
                "max-http-connections",
                self.max_http_connections.to_string(),
            ),
            (
                "publisher-channel-reserve",
                self.publisher_channel_reserve.to_string(),
            ),
            (
                "max-commands-per-sec",
                self.max_commands_per_sec.to_string(),
            ),
            ("command-burst", self.command_burst.to_string()),
            (
                "rate-limit-close-after",
                self.rate_limit_close_after.to_string(),
            ),
            (
                "config",
                self.config_file
                    .as_ref()
                    .map_or("<built-in namespaces>".into(), |p| p.display().to_string()),
            ),
            ("redis", secret(&self.redis).into()),
            ("redis-prefix", self.redis_prefix.clone()),
            ("redis-linger-ms", self.redis_linger_ms.to_string()),
            (
                "node-id",
                self.node_id.clone().unwrap_or_else(|| "<random>".into()),
            ),
            ("print-config", self.print_config.to_string()),
            ("echo", self.echo.to_string()),
            ("deflate", self.deflate.to_string()),
        ];
        flags.extend(self.upstream.settings());
        flags.extend(self.tls.settings());
        for (k, v) in flags {
            out.push_str(&format!("#   --{k} {v}\n"));
        }
        out.push('\n');
        out.push_str(&self.namespaces.to_toml());
        out.push_str(&crate::routes::to_toml(&self.listeners));
        out
    }
}
