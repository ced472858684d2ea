//! dealport-node: the I/O around the pure core, written against futures-io and async-io only.
