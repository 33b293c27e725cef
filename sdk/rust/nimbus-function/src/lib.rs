//! Write nimbus functions in Rust as WebAssembly components of the `nimbus:function`
//! world: implement [`Handler`], then `nimbus_function::export!(YourType);`.
//!
//! A function gets every event (API Gateway, queue, schedule, or anything passed to
//! `nimbus invoke`) as the JSON text a Lambda handler would get, and returns JSON text,
//! or an [`Error`] that nimbus reports as Lambda's `{errorType, errorMessage}`.
//!
//! ```ignore
//! struct Hello;
//!
//! impl nimbus_function::Handler for Hello {
//!     fn handle(event: String, ctx: nimbus_function::Context) -> Result<String, nimbus_function::Error> {
//!         Ok(format!(r#"{{"requestId":"{}","bytes":{}}}"#, ctx.request_id, event.len()))
//!     }
//! }
//!
//! nimbus_function::export!(Hello);
//! ```
//!
//! Build with `cargo build --release --target wasm32-wasip2` (crate-type `cdylib`) and
//! point the function's `handler:` at the `.wasm` file, with `runtime: wasm`.

#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../../../wit",
        world: "nimbus:function/function",
        pub_export_macro: true,
        export_macro_name: "export_world",
        default_bindings_module: "nimbus_function::bindings",
    });
}

pub use bindings::exports::nimbus::function::handler::{Context, Error, Guest as Handler};

impl Error {
    /// An error of the given type (`ValidationError`, ...) and message.
    pub fn new(error_type: impl Into<String>, error_message: impl Into<String>) -> Error {
        Error {
            error_type: error_type.into(),
            error_message: error_message.into(),
        }
    }
}

/// Exports a type implementing [`Handler`] as the component's `nimbus:function/handler`.
#[macro_export]
macro_rules! export {
    ($handler:ident) => {
        $crate::bindings::export_world!($handler);
    };
}
