fn main() {
    eprintln!("etcd: the server is not assembled yet");
    std::process::exit(1);
}
