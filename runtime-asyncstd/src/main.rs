fn main() {
    eprintln!("dealport: the node is not built yet (see README: status)");
    std::process::exit(2);
}
