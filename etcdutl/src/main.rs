fn main() {
    std::process::exit(etcdutl::run(std::env::args_os()));
}
