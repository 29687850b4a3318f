fn main() {
    std::process::exit(etcdctl::run(std::env::args_os()));
}
