use super::*;
use std::collections::HashMap;
fn parse_env(args: &[&str], env: &[(&str, &str)]) -> Result<ServerConfig, ConfigError> {
    let env: HashMap<String, String> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let mut full = vec!["etcd"];
    full.extend_from_slice(args);
    ServerConfig::from_args_and_env(full, |name| env.get(name).cloned())
}

fn parse(args: &[&str]) -> Result<ServerConfig, ConfigError> {
    parse_env(args, &[])
}

fn error(args: &[&str]) -> String {
    parse(args)
        .expect_err("expected the configuration to be refused")
        .to_string()
}

fn addr(s: &str) -> ListenAddr {
    ListenAddr::Tcp(s.parse().unwrap())
}

#[test]
fn no_flags_give_etcds_single_member_defaults() {
    let c = parse(&[]).unwrap();
    assert_eq!(c.name, "default");
    assert_eq!(c.data_dir, PathBuf::from("default.etcd"));
    assert_eq!(
        c.listen_client_urls,
        vec![ListenUrl {
            url: "http://127.0.0.1:2379".into(),
            secure: false,
            addr: addr("127.0.0.1:2379")
        }]
    );
    assert_eq!(c.advertise_client_urls, vec!["http://127.0.0.1:2379"]);
    assert_eq!(c.listen_peer_urls[0].addr, addr("127.0.0.1:2380"));
    assert_eq!(c.initial_advertise_peer_urls, vec!["http://127.0.0.1:2380"]);
    assert_eq!(
        c.initial_cluster,
        vec![(
            "default".to_string(),
            vec!["http://127.0.0.1:2380".to_string()]
        )]
    );
    assert_eq!(c.cluster_state, ClusterState::New);
    assert_eq!(c.initial_cluster_token, "etcd-cluster");
    assert_eq!(c.heartbeat_interval, Duration::from_millis(100));
    assert_eq!(c.election_timeout, Duration::from_millis(1000));
    assert_eq!(c.election_ticks(), 10);
    assert_eq!(c.snapshot_count, 100_000);
    assert_eq!(c.quota_backend_bytes, 2_147_483_648);
    assert_eq!(c.limits(), Limits::default());
    assert_eq!(c.auto_compaction, None);
    assert_eq!(c.log_level, LogLevel::Info);
    assert_eq!(c.config_file, None);
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    assert_eq!(
        c.backend_path(),
        PathBuf::from("default.etcd/member/snap/db")
    );
    assert_eq!(c.wal_dir(), PathBuf::from("default.etcd/member/wal"));
    assert_eq!(ServerConfig::default(), c);
}

#[test]
fn every_flag_is_read() {
    let c = parse(&[
        "--name=m1",
        "--data-dir",
        "/var/lib/m1",
        "--listen-client-urls",
        "http://127.0.0.1:22379,http://[::1]:22379",
        "--advertise-client-urls",
        "http://10.0.0.1:22379",
        "--listen-peer-urls",
        "http://0.0.0.0:22380",
        "--initial-advertise-peer-urls",
        "http://10.0.0.1:22380",
        "--initial-cluster",
        "m0=http://10.0.0.0:22380,m1=http://10.0.0.1:22380,m2=http://10.0.0.2:22380",
        "--initial-cluster-state",
        "existing",
        "--initial-cluster-token",
        "tok",
        "--heartbeat-interval",
        "50",
        "--election-timeout",
        "500",
        "--snapshot-count",
        "5",
        "--quota-backend-bytes",
        "1048576",
        "--max-request-bytes",
        "1024",
        "--max-txn-ops",
        "16",
        "--auto-compaction-mode",
        "revision",
        "--auto-compaction-retention",
        "1000",
        "--log-level",
        "debug",
        "--logger",
        "capnslog",
        "--enable-v2=false",
    ])
    .unwrap();
    assert_eq!(c.name, "m1");
    assert_eq!(c.data_dir, PathBuf::from("/var/lib/m1"));
    let listen: Vec<ListenAddr> = c
        .listen_client_urls
        .iter()
        .map(|l| l.addr.clone())
        .collect();
    // Sorted by URL text, as etcd sorts.
    assert_eq!(listen, vec![addr("127.0.0.1:22379"), addr("[::1]:22379")]);
    assert_eq!(c.advertise_client_urls, vec!["http://10.0.0.1:22379"]);
    assert_eq!(c.listen_peer_urls[0].addr, addr("0.0.0.0:22380"));
    assert_eq!(c.initial_cluster.len(), 3);
    assert_eq!(c.initial_cluster[2].0, "m2");
    assert_eq!(c.cluster_state, ClusterState::Existing);
    assert_eq!(c.initial_cluster_token, "tok");
    assert_eq!(c.heartbeat_interval, Duration::from_millis(50));
    assert_eq!(c.election_timeout, Duration::from_millis(500));
    assert_eq!(c.snapshot_count, 5);
    assert_eq!(c.quota_backend_bytes, 1_048_576);
    assert_eq!(
        c.limits(),
        Limits {
            max_request_bytes: 1024,
            max_txn_ops: 16,
            ..Limits::default()
        }
    );
    assert_eq!(c.auto_compaction, Some(AutoCompaction::Revision(1000)));
    assert_eq!(c.log_level, LogLevel::Debug);
}

#[test]
fn the_harness_command_line_parses() {
    // What integration/src/cluster.rs gives member 1 of 3, plus a test's extra args.
    let c = parse(&[
        "--name",
        "m1",
        "--data-dir",
        "/tmp/etcd-rs-test-1-x/m1",
        "--listen-client-urls",
        "http://127.0.0.1:21002",
        "--advertise-client-urls",
        "http://127.0.0.1:21002",
        "--listen-peer-urls",
        "http://127.0.0.1:21003",
        "--initial-advertise-peer-urls",
        "http://127.0.0.1:21003",
        "--initial-cluster",
        "m0=http://127.0.0.1:21001,m1=http://127.0.0.1:21003,m2=http://127.0.0.1:21005",
        "--initial-cluster-state",
        "new",
        "--initial-cluster-token",
        "etcd-rs-test-1234-0",
        "--heartbeat-interval",
        "50",
        "--election-timeout",
        "500",
        "--snapshot-count",
        "5",
    ])
    .unwrap();
    assert_eq!(c.name, "m1");
    assert_eq!(c.listen_client_urls[0].addr, addr("127.0.0.1:21002"));
    assert_eq!(c.listen_peer_urls[0].addr, addr("127.0.0.1:21003"));
    assert_eq!(
        c.initial_cluster
            .iter()
            .map(|(n, _)| n.as_str())
            .collect::<Vec<_>>(),
        ["m0", "m1", "m2"]
    );
    assert_eq!(c.initial_cluster_token, "etcd-rs-test-1234-0");
    assert_eq!(c.snapshot_count, 5);
    assert_eq!(c.election_ticks(), 10);
}

#[test]
fn a_name_alone_derives_data_dir_and_initial_cluster() {
    let c = parse(&["--name", "infra1"]).unwrap();
    assert_eq!(c.data_dir, PathBuf::from("infra1.etcd"));
    assert_eq!(
        c.initial_cluster,
        vec![(
            "infra1".to_string(),
            vec!["http://127.0.0.1:2380".to_string()]
        )]
    );
}

#[test]
fn environment_variables_apply_unless_the_flag_is_given() {
    let env = [
        ("ETCD_NAME", "from-env"),
        ("ETCD_DATA_DIR", "/env/dir"),
        ("ETCD_SNAPSHOT_COUNT", "42"),
        ("ETCD_LISTEN_CLIENT_URLS", "http://127.0.0.1:23000"),
        ("ETCD_ADVERTISE_CLIENT_URLS", "http://127.0.0.1:23000"),
        ("ETCD_ENABLE_V2", "false"),
        ("ETCD_AUTO_COMPACTION_RETENTION", "30m"),
        ("ETCD_UNRELATED", "x"),
        ("ETCD_INITIAL_CLUSTER", ""),
    ];
    let c = parse_env(&["--snapshot-count", "7"], &env).unwrap();
    assert_eq!(c.name, "from-env");
    assert_eq!(c.data_dir, PathBuf::from("/env/dir"));
    assert_eq!(c.snapshot_count, 7, "the flag shadows ETCD_SNAPSHOT_COUNT");
    assert_eq!(c.listen_client_urls[0].addr, addr("127.0.0.1:23000"));
    assert_eq!(
        c.auto_compaction,
        Some(AutoCompaction::Periodic(Duration::from_secs(1800)))
    );
    // A listen URL set by environment counts as set explicitly, as in etcd.
    let e = parse_env(
        &[],
        &[("ETCD_LISTEN_CLIENT_URLS", "http://127.0.0.1:23000")],
    )
    .unwrap_err();
    assert!(
        e.to_string()
            .contains("--advertise-client-urls is required"),
        "{e}"
    );
    // A bad value from the environment is refused like a bad flag.
    let e = parse_env(&[], &[("ETCD_HEARTBEAT_INTERVAL", "abc")]).unwrap_err();
    assert!(matches!(e, ConfigError::Usage(_)), "{e}");
    assert_eq!(e.exit_code(), 2);
}

#[test]
fn a_config_file_replaces_flags_and_environment() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("etcd.yml");
    std::fs::write(
        &path,
        "# as etcd.conf.yml.sample\n\
         name: 'infra2'\n\
         data-dir: /data/infra2\n\
         wal-dir:\n\
         snapshot-count: 10000\n\
         heartbeat-interval: 200\n\
         election-timeout: 2000\n\
         quota-backend-bytes: -1\n\
         listen-peer-urls: http://127.0.0.1:24380\n\
         listen-client-urls: http://127.0.0.1:24379,http://localhost:24379\n\
         max-snapshots: 5\n\
         initial-advertise-peer-urls: http://127.0.0.1:24380\n\
         advertise-client-urls: http://127.0.0.1:24379\n\
         initial-cluster: infra1=http://127.0.0.1:23380,infra2=http://127.0.0.1:24380\n\
         initial-cluster-token: 'etcd-cluster-1'\n\
         initial-cluster-state: 'existing'\n\
         auto-compaction-mode: periodic\n\
         auto-compaction-retention: 1\n\
         max-txn-ops: 64\n\
         max-request-bytes: 2097152\n\
         log-level: warn\n\
         logger: zap\n\
         enable-v2: false\n",
    )
    .unwrap();
    let file = path.to_str().unwrap();
    let c = parse_env(
        &["--config-file", file, "--name", "ignored"],
        &[("ETCD_SNAPSHOT_COUNT", "1")],
    )
    .unwrap();
    assert_eq!(c.name, "infra2");
    assert_eq!(c.data_dir, PathBuf::from("/data/infra2"));
    assert_eq!(c.snapshot_count, 10_000);
    assert_eq!(c.heartbeat_interval, Duration::from_millis(200));
    assert_eq!(c.election_timeout, Duration::from_millis(2000));
    assert_eq!(c.quota_backend_bytes, u64::MAX);
    assert_eq!(c.listen_client_urls.len(), 2);
    assert_eq!(c.listen_client_urls[1].addr, addr("127.0.0.1:24379"));
    assert_eq!(c.initial_cluster.len(), 2);
    assert_eq!(c.initial_cluster_token, "etcd-cluster-1");
    assert_eq!(c.cluster_state, ClusterState::Existing);
    assert_eq!(
        c.auto_compaction,
        Some(AutoCompaction::Periodic(Duration::from_secs(3600)))
    );
    assert_eq!(c.max_txn_ops, 64);
    assert_eq!(c.max_request_bytes, 2_097_152);
    assert_eq!(c.log_level, LogLevel::Warn);
    assert_eq!(c.config_file.as_deref(), Some(path.as_path()));
    assert!(
        c.warnings.iter().any(|w| w.contains("\"max-snapshots\"")),
        "{:?}",
        c.warnings
    );

    // ETCD_CONFIG_FILE selects it too; missing keys take etcd's defaults.
    std::fs::write(&path, "name: solo\n").unwrap();
    let c = parse_env(&[], &[("ETCD_CONFIG_FILE", file)]).unwrap();
    assert_eq!(c.name, "solo");
    assert_eq!(c.data_dir, PathBuf::from("solo.etcd"));
    assert_eq!(c.heartbeat_interval, Duration::from_millis(100));
    assert_eq!(c.initial_cluster[0].0, "solo");

    // The file's values are checked as flags are.
    std::fs::write(&path, "heartbeat-interval: 100\nelection-timeout: 400\n").unwrap();
    let e = parse(&["--config-file", file]).unwrap_err().to_string();
    assert!(
        e.contains("--election-timeout[400ms] should be at least"),
        "{e}"
    );
    std::fs::write(&path, "heartbeat-interval: [1]\n").unwrap();
    let e = parse(&["--config-file", file]).unwrap_err().to_string();
    assert!(
        e.starts_with("error verifying flags, error unmarshaling config file"),
        "{e}"
    );
    let e = parse(&["--config-file", "/no/such/etcd.yml"]).unwrap_err();
    assert_eq!(e.exit_code(), 1);
    assert!(e.to_string().contains("/no/such/etcd.yml"), "{e}");
}

#[test]
fn timing_is_checked_with_etcds_messages() {
    assert_eq!(
        error(&["--election-timeout", "100"]),
        "error verifying flags, --election-timeout[100ms] should be at least as 5 times as \
         --heartbeat-interval[100ms]. See 'etcd --help'."
    );
    assert_eq!(
        error(&["--heartbeat-interval", "0"]),
        "error verifying flags, --heartbeat-interval must be >0 (set to 0ms). See 'etcd \
         --help'."
    );
    assert_eq!(
        error(&["--election-timeout", "60000"]),
        "error verifying flags, --election-timeout[60000ms] is too long, and should be set \
         less than 50000ms. See 'etcd --help'."
    );
    assert!(parse(&["--heartbeat-interval", "10", "--election-timeout", "50"]).is_ok());
}

#[test]
fn the_initial_cluster_is_checked_with_etcds_messages() {
    assert_eq!(
        error(&["--initial-cluster", "foo=http://127.0.0.1:2380"]),
        "couldn't find local name \"default\" in the initial cluster configuration"
    );
    assert_eq!(
        error(&["--initial-cluster", "default=http://127.0.0.1:2999"]),
        "--initial-cluster has default=http://127.0.0.1:2999 but missing from \
         --initial-advertise-peer-urls=http://127.0.0.1:2380 (resolved urls: \
         \"http://127.0.0.1:2380\" != \"http://127.0.0.1:2999\")"
    );
    assert_eq!(
        error(&[
            "--initial-cluster",
            "default=http://127.0.0.1:2380,default=http://127.0.0.1:2381"
        ]),
        "--initial-cluster has default=http://127.0.0.1:2381 but missing from \
         --initial-advertise-peer-urls=http://127.0.0.1:2380 \
         (len([\"http://127.0.0.1:2380\"]) != len([\"http://127.0.0.1:2380\" \
         \"http://127.0.0.1:2381\"]))"
    );
    assert_eq!(
        error(&[
            "--initial-advertise-peer-urls",
            "http://127.0.0.1:2380,http://127.0.0.1:2381",
            "--initial-cluster",
            "default=http://127.0.0.1:2380"
        ]),
        "--initial-advertise-peer-urls has http://127.0.0.1:2381 but missing from \
         --initial-cluster=default=http://127.0.0.1:2380,default=http://127.0.0.1:2381"
    );
    assert_eq!(
        error(&[
            "--initial-cluster",
            "default=http://127.0.0.1:2380,m1=http://127.0.0.1:2380"
        ]),
        "initial cluster default=http://127.0.0.1:2380,m1=http://127.0.0.1:2380 has \
         duplicate url"
    );
    assert_eq!(
        error(&["--initial-cluster", "default=bad"]),
        "error setting up initial cluster: URL scheme must be http, https, unix, or unixs: \
         bad"
    );
    // Two URLs for one member, given in any order, match the advertised ones.
    let c = parse(&[
        "--initial-advertise-peer-urls",
        "http://127.0.0.1:2381,http://127.0.0.1:2380",
        "--initial-cluster",
        "default=http://127.0.0.1:2381,default=http://127.0.0.1:2380",
    ])
    .unwrap();
    assert_eq!(
        c.initial_cluster[0].1,
        vec!["http://127.0.0.1:2380", "http://127.0.0.1:2381"]
    );
    assert_eq!(c.initial_advertise_peer_urls, c.initial_cluster[0].1);
}

#[test]
fn urls_are_checked() {
    let e = error(&["--listen-client-urls", "http://127.0.0.1:23790"]);
    assert_eq!(
        e,
        "error verifying flags, --advertise-client-urls is required when \
         --listen-client-urls is set explicitly. See 'etcd --help'."
    );
    let e = error(&[
        "--listen-client-urls",
        "bad",
        "--advertise-client-urls",
        "http://127.0.0.1:2379",
    ]);
    assert!(
        e.contains("URL scheme must be http, https, unix, or unixs: bad"),
        "{e}"
    );
    assert!(error(&["--listen-peer-urls", "http://example.com:2380"])
        .contains("expected IP in URL for binding (http://example.com:2380)"));
    assert!(
        error(&["--initial-advertise-peer-urls", "http://127.0.0.1"])
            .contains("URL address does not have the form \"host:port\": http://127.0.0.1")
    );
    assert!(
        error(&["--advertise-client-urls", "http://127.0.0.1:2379/v2"])
            .contains("URL must not contain a path: http://127.0.0.1:2379/v2")
    );
    assert!(error(&["--listen-peer-urls", "http://127.0.0.1:99999"]).contains("99999"));
    for bad in [
        "http://",
        "http://:2380",
        "http://::1:2380",
        "http://[::1]",
        "http://[nope]:2380",
        "http://a b:2380",
        "http://user@host:2380",
    ] {
        assert!(
            error(&["--initial-advertise-peer-urls", bad]).contains("host:port"),
            "{bad}"
        );
    }
    assert!(error(&["--advertise-client-urls", "http://h:1?x=1"]).contains("path"));
    assert_eq!(
        error(&["--listen-peer-urls", "https://127.0.0.1:2380"]),
        "cannot listen on TLS for 127.0.0.1:2380: KeyFile and CertFile are not presented"
    );
    let unix = parse(&["--listen-peer-urls", "unix://sock:1"]).unwrap();
    assert_eq!(
        unix.listen_peer_urls[0].addr,
        ListenAddr::Unix(PathBuf::from("sock:1"))
    );
    // Host names are fine where nothing binds; localhost binds to 127.0.0.1.
    let c = parse(&[
        "--listen-client-urls",
        "http://localhost:2379,http://127.0.0.1:2379,http://localhost:2379",
        "--advertise-client-urls",
        "http://node1.example:2379",
        "--listen-peer-urls",
        "http://127.0.0.1:0",
    ])
    .unwrap();
    assert_eq!(c.listen_client_urls.len(), 2, "duplicates dropped");
    assert_eq!(c.listen_client_urls[1].url, "http://localhost:2379");
    assert_eq!(c.listen_client_urls[1].addr, addr("127.0.0.1:2379"));
    assert_eq!(c.advertise_client_urls, vec!["http://node1.example:2379"]);
    assert_eq!(c.listen_peer_urls[0].addr.tcp().unwrap().port(), 0);
}

#[test]
fn enumerations_are_checked() {
    assert_eq!(
        error(&["--initial-cluster-state", "bad"]),
        "error verifying flags, unexpected clusterState \"bad\". See 'etcd --help'."
    );
    assert_eq!(
        error(&["--auto-compaction-mode", "foo"]),
        "error verifying flags, unknown auto-compaction-mode \"foo\". See 'etcd --help'."
    );
    assert!(error(&["--log-level", "foo"]).contains("unrecognized level: \"foo\""));
    assert!(error(&["--logger", "glog"]).contains("unknown logger option \"glog\""));
    assert!(error(&["--enable-v2"]).contains("--enable-v2"));
    assert!(error(&["--enable-v2=true"]).contains("--enable-v2"));
    for (level, want) in [
        ("warn", LogLevel::Warn),
        ("error", LogLevel::Error),
        ("fatal", LogLevel::Error),
    ] {
        assert_eq!(parse(&["--log-level", level]).unwrap().log_level, want);
    }
}

#[test]
fn lease_checkpoints_are_off_unless_enabled() {
    let interval = |args: &[&str]| {
        parse(args)
            .map(|c| c.lease_checkpoint_interval)
            .map_err(|e| e.to_string())
    };
    assert_eq!(interval(&[]), Ok(None));
    assert_eq!(
        interval(&["--experimental-lease-checkpoint-interval", "1s"]),
        Ok(None)
    );
    assert_eq!(
        interval(&["--experimental-enable-lease-checkpoint"]),
        Ok(Some(Duration::from_secs(300)))
    );
    assert_eq!(
        interval(&[
            "--experimental-enable-lease-checkpoint=true",
            "--experimental-lease-checkpoint-interval",
            "1.5s"
        ]),
        Ok(Some(Duration::from_millis(1500)))
    );
    assert_eq!(
        interval(&[
            "--experimental-enable-lease-checkpoint",
            "--experimental-lease-checkpoint-interval",
            "0"
        ]),
        Ok(Some(Duration::from_secs(300)))
    );
    let e = interval(&["--experimental-lease-checkpoint-interval", "soon"]).unwrap_err();
    assert!(e.contains("experimental-lease-checkpoint-interval"), "{e}");

    let c = parse_env(
        &[],
        &[
            ("ETCD_EXPERIMENTAL_ENABLE_LEASE_CHECKPOINT", "true"),
            ("ETCD_EXPERIMENTAL_LEASE_CHECKPOINT_INTERVAL", "2m"),
        ],
    )
    .unwrap();
    assert_eq!(c.lease_checkpoint_interval, Some(Duration::from_secs(120)));

    // etcd's YAML holds a time.Duration as nanoseconds.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("etcd.yml");
    std::fs::write(
        &path,
        "experimental-enable-lease-checkpoint: true\n\
         experimental-lease-checkpoint-interval: 3000000000\n",
    )
    .unwrap();
    let c = parse(&["--config-file", path.to_str().unwrap()]).unwrap();
    assert_eq!(c.lease_checkpoint_interval, Some(Duration::from_secs(3)));
}

#[test]
fn auto_compaction_retention_as_etcd_reads_it() {
    let periodic = |r: &str| {
        parse(&["--auto-compaction-retention", r])
            .map(|c| c.auto_compaction)
            .map_err(|e| e.to_string())
    };
    let hours = |h: u64| {
        Ok(Some(AutoCompaction::Periodic(Duration::from_secs(
            h * 3600,
        ))))
    };
    assert_eq!(periodic("0"), Ok(None));
    assert_eq!(periodic("0s"), Ok(None));
    assert_eq!(periodic("1"), hours(1));
    assert_eq!(periodic("72"), hours(72));
    assert_eq!(periodic("1h"), hours(1));
    assert_eq!(
        periodic("30m"),
        Ok(Some(AutoCompaction::Periodic(Duration::from_secs(1800))))
    );
    assert_eq!(
        periodic("5s"),
        Ok(Some(AutoCompaction::Periodic(Duration::from_secs(5))))
    );
    assert_eq!(
        periodic("1h30m"),
        Ok(Some(AutoCompaction::Periodic(Duration::from_secs(5400))))
    );
    assert_eq!(
        periodic("1.5s"),
        Ok(Some(AutoCompaction::Periodic(Duration::from_millis(1500))))
    );
    assert_eq!(
        periodic("xx"),
        Err("error parsing CompactionRetention: time: invalid duration \"xx\"".into())
    );
    assert_eq!(
        periodic("-1"),
        Err("error parsing CompactionRetention: time: missing unit in duration \"-1\"".into())
    );
    assert_eq!(
        periodic("-5s"),
        Err("error parsing CompactionRetention: time: invalid duration \"-5s\"".into())
    );
    assert_eq!(
        periodic("3d"),
        Err(
            "error parsing CompactionRetention: time: unknown unit \"d\" in duration \"3d\"".into()
        )
    );
    let revision = |r: &str| {
        parse(&[
            "--auto-compaction-mode",
            "revision",
            "--auto-compaction-retention",
            r,
        ])
        .map(|c| c.auto_compaction)
    };
    assert_eq!(
        revision("100").unwrap(),
        Some(AutoCompaction::Revision(100))
    );
    assert_eq!(revision("0").unwrap(), None);
    assert!(revision("1h").is_err());
}

#[test]
fn sizes_follow_etcd() {
    let c = parse(&[
        "--snapshot-count",
        "0",
        "--quota-backend-bytes",
        "9000000000",
    ])
    .unwrap();
    assert_eq!(c.snapshot_count, 100_000, "0 means etcd's default");
    assert_eq!(c.quota_backend_bytes, 9_000_000_000);
    assert_eq!(c.warnings.len(), 2, "{:?}", c.warnings);
    // etcd accepts --max-txn-ops 0 (every txn with ops is then refused); so do we.
    assert_eq!(parse(&["--max-txn-ops", "0"]).unwrap().max_txn_ops, 0);
    assert!(matches!(
        parse(&["--max-txn-ops", "-1"]),
        Err(ConfigError::Usage(_))
    ));
}

#[test]
fn unknown_flags_and_arguments_are_refused() {
    let e = parse(&["--no-such-flag"]).unwrap_err();
    assert!(matches!(e, ConfigError::Usage(_)));
    assert_eq!(e.exit_code(), 2);
    assert!(e.to_string().contains("--no-such-flag"), "{e}");
    assert!(matches!(
        parse(&["--heartbeat-interval", "abc"]),
        Err(ConfigError::Usage(_))
    ));
    assert_eq!(
        error(&["member"]),
        "error verifying flags, 'member' is not a valid flag. See 'etcd --help'."
    );
    // As Go's flag package, the last of a repeated flag wins, and one dash is enough.
    assert_eq!(parse(&["--name", "a", "--name", "b"]).unwrap().name, "b");
    let c = parse(&[
        "-name",
        "go",
        "-snapshot-count=9",
        "-quota-backend-bytes",
        "-1",
    ])
    .unwrap();
    assert_eq!((c.name.as_str(), c.snapshot_count), ("go", 9));
    assert_eq!(c.quota_backend_bytes, u64::MAX);
}

#[test]
fn version_prints_an_etcd_style_block() {
    let e = parse(&["--version"]).unwrap_err();
    let ConfigError::Usage(e) = e else {
        panic!("expected a version display, got {e:?}")
    };
    assert_eq!(e.kind(), clap::error::ErrorKind::DisplayVersion);
    assert_eq!(e.exit_code(), 0);
    let text = e.to_string();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("etcd Version: 3.5.17"));
    assert!(lines.next().unwrap().starts_with("Git SHA: "));
    assert!(lines.next().unwrap().starts_with("Go Version: "));
    assert!(lines.next().unwrap().starts_with("Go OS/Arch: linux/"));
    assert!(SERVER_VERSION.starts_with("3.5."));
    let help = parse(&["--help"]).unwrap_err();
    assert_eq!(help.exit_code(), 0);
    assert!(help.to_string().contains("--initial-cluster-token"));
}

#[test]
fn auth_flags_env_and_config_keys_are_read() {
    let defaults = parse(&[]).unwrap().auth;
    assert_eq!(defaults, AuthConfig::default());
    assert_eq!(
        (
            defaults.token.as_str(),
            defaults.token_ttl,
            defaults.bcrypt_cost
        ),
        ("simple", Duration::from_secs(300), 10)
    );
    let c = parse_env(
        &["--auth-token", "jwt,pub-key=p,priv-key=k,sign-method=RS256"],
        &[("ETCD_AUTH_TOKEN_TTL", "2"), ("ETCD_BCRYPT_COST", "4")],
    )
    .unwrap();
    assert_eq!(
        c.auth,
        AuthConfig {
            token: "jwt,pub-key=p,priv-key=k,sign-method=RS256".into(),
            token_ttl: Duration::from_secs(2),
            bcrypt_cost: 4,
        }
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("etcd.yml");
    std::fs::write(
        &path,
        "auth-token: ''\nauth-token-ttl: 60\nbcrypt-cost: 12\n",
    )
    .unwrap();
    let c = parse(&["--config-file", path.to_str().unwrap()]).unwrap();
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    assert_eq!(
        c.auth,
        AuthConfig {
            token: String::new(),
            token_ttl: Duration::from_secs(60),
            bcrypt_cost: 12,
        }
    );
}

#[test]
fn https_urls_need_a_certificate_or_auto_tls_with_etcds_messages() {
    let client = [
        "--listen-client-urls",
        "https://127.0.0.1:2379",
        "--advertise-client-urls",
        "https://127.0.0.1:2379",
    ];
    assert_eq!(
        error(&client),
        "TLS key/cert (--cert-file, --key-file) must be provided for client url \
         https://127.0.0.1:2379 with HTTPS scheme"
    );
    let with_cert = [
        &client[..],
        &["--cert-file", "/c.pem", "--key-file", "/k.pem"],
    ]
    .concat();
    let c = parse(&with_cert).unwrap();
    assert!(c.listen_client_urls[0].secure);
    assert_eq!(c.tls.client.cert_file, Some(PathBuf::from("/c.pem")));
    assert!(!c.tls.client.requires_client_cert());
    let auto = [&client[..], &["--auto-tls"]].concat();
    assert!(parse(&auto).unwrap().tls.client.auto_tls);
    let half = [&client[..], &["--cert-file", "/c.pem"]].concat();
    assert_eq!(
        error(&half),
        "KeyFile and CertFile must both be present[key: , cert: /c.pem]"
    );
    // A CA file alone makes client certificates mandatory, as etcd.
    let ca = [&with_cert[..], &["--trusted-ca-file", "/ca.pem"]].concat();
    assert!(parse(&ca).unwrap().tls.client.requires_client_cert());
    // Certificates on an http URL are only warned about.
    let plain = parse(&[
        "--cert-file",
        "/c.pem",
        "--key-file",
        "/k.pem",
        "--client-cert-auth",
    ])
    .unwrap();
    assert!(plain
        .warnings
        .iter()
        .any(|w| w.contains("ignoring key and cert files")));
    assert!(plain
        .warnings
        .iter()
        .any(|w| w.contains("ignoring client cert auth")));
}

#[test]
fn cipher_suites_and_versions_are_checked_as_etcd_checks_them() {
    let c = parse(&[
        "--cipher-suites",
        "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305",
    ])
    .unwrap();
    assert_eq!(c.tls.cipher_suites.len(), 2);
    assert_eq!(
        error(&["--cipher-suites", "FOO"]),
        "unexpected TLS cipher suite \"FOO\""
    );
    assert!(error(&["--cipher-suites", "TLS_RSA_WITH_AES_128_CBC_SHA"])
        .contains("\"TLS_RSA_WITH_AES_128_CBC_SHA\" is not supported by etcd-rs"));
    assert_eq!(
        error(&["--tls-min-version", "TLS1.1"]),
        "unexpected TLS version \"TLS1.1\" (must be one of: TLS1.2, TLS1.3)"
    );
    assert_eq!(
        error(&["--tls-min-version", "TLS1.3", "--tls-max-version", "TLS1.2"]),
        "min version (TLS1.3) is greater than max version (TLS1.2)"
    );
    assert_eq!(
        error(&[
            "--tls-min-version",
            "TLS1.3",
            "--cipher-suites",
            "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"
        ]),
        "cipher suites cannot be configured when only TLS1.3 is enabled"
    );
    let c = parse(&["--tls-min-version", "TLS1.3"]).unwrap();
    assert_eq!(c.tls.min_version, TlsVersion::Tls13);
    assert_eq!(
        error(&["--peer-auto-tls", "--self-signed-cert-validity", "0"]),
        "--self-signed-cert-validity must be greater than 0"
    );
}

#[test]
fn peer_tls_flags_and_the_config_file_blocks_give_the_same_settings() {
    let c = parse(&[
        "--peer-cert-file",
        "/p.pem",
        "--peer-key-file",
        "/p.key",
        "--peer-trusted-ca-file",
        "/ca.pem",
        "--peer-client-cert-auth",
        "--peer-cert-allowed-cn",
        "m1,m2",
        "--peer-crl-file",
        "/crl.pem",
    ])
    .unwrap();
    assert_eq!(c.tls.peer.allowed_cn, vec!["m1", "m2"]);
    assert_eq!(c.tls.peer.crl_file, Some(PathBuf::from("/crl.pem")));
    assert!(c.tls.peer.client_cert_auth);
    assert!(error(&[
        "--peer-cert-allowed-cn",
        "a",
        "--peer-cert-allowed-hostname",
        "b"
    ])
    .contains("mutually exclusive"));

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("etcd.yaml");
    std::fs::write(
        &file,
        "peer-transport-security:\n  cert-file: /p.pem\n  key-file: /p.key\n  \
         trusted-ca-file: /ca.pem\n  client-cert-auth: true\n  allowed-cn: m1\n  \
         crl-file: /crl.pem\n\
         client-transport-security:\n  auto-tls: true\n\
         cipher-suites: [TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256]\n\
         listen-client-urls: https://127.0.0.1:2379\n\
         advertise-client-urls: https://127.0.0.1:2379\n",
    )
    .unwrap();
    let f = parse(&["--config-file", file.to_str().unwrap()]).unwrap();
    // Every key is read (no "not supported" warning); the peer URL is http, which etcd warns of.
    assert!(
        !f.warnings.iter().any(|w| w.contains("not supported")),
        "{:?}",
        f.warnings
    );
    assert_eq!(f.tls.peer.cert_file, c.tls.peer.cert_file);
    assert_eq!(f.tls.peer.trusted_ca_file, c.tls.peer.trusted_ca_file);
    assert_eq!(f.tls.peer.crl_file, c.tls.peer.crl_file);
    assert_eq!(f.tls.peer.allowed_cn, vec!["m1"]);
    assert!(f.tls.peer.client_cert_auth && f.tls.client.auto_tls);
    assert_eq!(f.tls.cipher_suites.len(), 1);
}

#[test]
fn tls_flags_take_their_etcd_variables() {
    let c = parse_env(
        &[],
        &[
            ("ETCD_PEER_AUTO_TLS", "true"),
            ("ETCD_CLIENT_CERT_AUTH", "true"),
            ("ETCD_TRUSTED_CA_FILE", "/ca.pem"),
        ],
    )
    .unwrap();
    assert!(c.tls.peer.auto_tls && c.tls.client.client_cert_auth);
    assert_eq!(c.tls.client.trusted_ca_file, Some(PathBuf::from("/ca.pem")));
}

// corrupt
#[test]
fn corruption_checks_as_etcd_parses_them_with_the_periodic_check_on_by_default() {
    let checks = |args: &[&str]| {
        parse(args)
            .map(|c| c.corrupt_check)
            .map_err(|e| e.to_string())
    };
    let default = checks(&[]).unwrap();
    assert_eq!(
        default,
        CorruptCheckConfig {
            initial: false,
            periodic: Some(Duration::from_secs(300)),
            compact_hash: None,
        }
    );
    assert_eq!(default, CorruptCheckConfig::default());
    let c = checks(&[
        "--experimental-initial-corrupt-check",
        "--experimental-corrupt-check-time",
        "0",
    ])
    .unwrap();
    assert!(c.initial);
    assert_eq!(c.periodic, None, "0 turns the periodic check off");
    let c = checks(&["--experimental-corrupt-check-time", "1.5s"]).unwrap();
    assert_eq!(c.periodic, Some(Duration::from_millis(1500)));
    let c = checks(&["--experimental-corrupt-check-time=-1s"]).unwrap();
    assert_eq!(c.periodic, None);
    let c = checks(&[
        "--experimental-compact-hash-check-enabled",
        "--experimental-compact-hash-check-time",
        "2s",
    ])
    .unwrap();
    assert_eq!(c.compact_hash, Some(Duration::from_secs(2)));
    // The interval alone does not turn the compaction hash check on.
    let c = checks(&["--experimental-compact-hash-check-time", "2s"]).unwrap();
    assert_eq!(c.compact_hash, None);

    assert_eq!(
        checks(&["--experimental-corrupt-check-time", "bogus"]).unwrap_err(),
        "error verifying flags, invalid value \"bogus\" for flag \
         -experimental-corrupt-check-time: parse error. See 'etcd --help'."
    );
    assert_eq!(
        checks(&["--experimental-compact-hash-check-time", "0s"]).unwrap_err(),
        "error verifying flags, --experimental-compact-hash-check-time must be >0 \
         (set to 0s). See 'etcd --help'."
    );
    assert!(checks(&["--experimental-initial-corrupt-check=maybe"]).is_err());

    let c = parse_env(
        &[],
        &[
            ("ETCD_EXPERIMENTAL_INITIAL_CORRUPT_CHECK", "true"),
            ("ETCD_EXPERIMENTAL_CORRUPT_CHECK_TIME", "2m"),
        ],
    )
    .unwrap();
    assert!(c.corrupt_check.initial);
    assert_eq!(c.corrupt_check.periodic, Some(Duration::from_secs(120)));

    // etcd's YAML holds a time.Duration as nanoseconds.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("etcd.yml");
    std::fs::write(
        &path,
        "experimental-initial-corrupt-check: true\n\
         experimental-corrupt-check-time: 3000000000\n\
         experimental-compact-hash-check-enabled: true\n\
         experimental-compact-hash-check-time: 1s\n",
    )
    .unwrap();
    let c = parse(&["--config-file", path.to_str().unwrap()]).unwrap();
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    assert_eq!(
        c.corrupt_check,
        CorruptCheckConfig {
            initial: true,
            periodic: Some(Duration::from_secs(3)),
            compact_hash: Some(Duration::from_secs(1)),
        }
    );
}
