//! Running one test body against both servers: Debian's etcd 3.4 (the control, so that a test checks
//! etcd's behaviour rather than our reading of it) and this workspace's `etcd`.

use std::future::Future;
use std::time::Duration;

use crate::ServerBinary;

/// For each listed function `name(server: ServerBinary)`, a test module `name` with two tests,
/// `etcd34` and `etcd_rs`, that call it with [`ServerBinary::real_etcd`] and [`ServerBinary::etcd_rs`].
/// Filter with `cargo test -- ::etcd34` or `-- ::etcd_rs`. The functions themselves are written
/// outside the macro, so rustfmt and the compiler's unused-function warning see them.
///
/// ```ignore
/// integration::server_tests! {
///     fn put_answers;
///     // `async fn`s run on a multi-threaded tokio runtime.
///     async fn watch_works;
///     // Needs what our server does not have yet: its `etcd_rs` test is `#[ignore]`d with this reason.
///     pending_on_etcd_rs("etcd-rs: auth is not built yet") async fn auth_works;
/// }
///
/// fn put_answers(server: ServerBinary) {
///     let cluster = Cluster::start(ClusterSpec { server, ..ClusterSpec::default() }).unwrap();
///     // ...
/// }
/// ```
///
/// The `etcd_rs` test panics with a "build it first" message when the workspace's `etcd` is missing.
#[macro_export]
macro_rules! server_tests {
    () => {};

    (fn $name:ident; $($rest:tt)*) => {
        mod $name {
            #[test]
            fn etcd34() {
                super::$name($crate::ServerBinary::real_etcd())
            }

            #[test]
            fn etcd_rs() {
                super::$name($crate::server_tests::etcd_rs_or_panic())
            }
        }
        $crate::server_tests! { $($rest)* }
    };

    (async fn $name:ident; $($rest:tt)*) => {
        mod $name {
            #[test]
            fn etcd34() {
                $crate::server_tests::block_on(super::$name($crate::ServerBinary::real_etcd()))
            }

            #[test]
            fn etcd_rs() {
                $crate::server_tests::block_on(super::$name(
                    $crate::server_tests::etcd_rs_or_panic(),
                ))
            }
        }
        $crate::server_tests! { $($rest)* }
    };

    (pending_on_etcd_rs($why:literal) fn $name:ident; $($rest:tt)*) => {
        mod $name {
            #[test]
            fn etcd34() {
                super::$name($crate::ServerBinary::real_etcd())
            }

            #[test]
            #[ignore = $why]
            fn etcd_rs() {
                super::$name($crate::server_tests::etcd_rs_or_panic())
            }
        }
        $crate::server_tests! { $($rest)* }
    };

    (pending_on_etcd_rs($why:literal) async fn $name:ident; $($rest:tt)*) => {
        mod $name {
            #[test]
            fn etcd34() {
                $crate::server_tests::block_on(super::$name($crate::ServerBinary::real_etcd()))
            }

            #[test]
            #[ignore = $why]
            fn etcd_rs() {
                $crate::server_tests::block_on(super::$name(
                    $crate::server_tests::etcd_rs_or_panic(),
                ))
            }
        }
        $crate::server_tests! { $($rest)* }
    };
}

/// The workspace's `etcd`, or a panic that says how to build it.
#[doc(hidden)]
pub fn etcd_rs_or_panic() -> ServerBinary {
    ServerBinary::etcd_rs().unwrap_or_else(|e| panic!("{e}"))
}

/// Bound on a whole async test body. Some client calls (creating a watch, say) retry for as long as the
/// server does not answer; against a broken server the test must fail, not hang.
pub const ASYNC_TEST_TIMEOUT: Duration = Duration::from_secs(180);

/// Runs an async test body on a fresh multi-threaded runtime, as `#[tokio::test(flavor =
/// "multi_thread")]` does, failing it after [`ASYNC_TEST_TIMEOUT`].
#[doc(hidden)]
pub fn block_on<F: Future<Output = ()>>(body: F) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("build a tokio runtime");
    let finished = runtime.block_on(async { tokio::time::timeout(ASYNC_TEST_TIMEOUT, body).await });
    // Dropping the runtime cancels whatever the body left running (writers, watches).
    drop(runtime);
    if finished.is_err() {
        panic!("the test did not finish within {ASYNC_TEST_TIMEOUT:?}");
    }
}
