//! Host bindings of the `nimbus:function` world (WIT in `wit/`): the handler export and
//! the service imports.

wasmtime::component::bindgen!({
    path: "../../wit",
    world: "nimbus:function/function",
    imports: { default: async },
    exports: { default: async },
});
