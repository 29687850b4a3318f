fn main() {
    etcdutl::init_logging();
    std::process::exit(etcdutl::run(std::env::args_os()));
}
