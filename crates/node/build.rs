//! napi-rs build setup (linker flags for the platforms that need them).

fn main() {
    napi_build::setup();
}
