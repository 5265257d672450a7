//! Generated bindings for the `keel:host` WIT package. Every world imports
//! the same interfaces, so the agent and channel worlds reuse the
//! connector's.

mod connector {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "keel:host/connector",
        imports: { default: trappable | tracing },
    });
}

mod agent {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "keel:host/agent",
        imports: { default: trappable | tracing },
        with: {
            "keel:host": super::connector::keel::host,
        },
    });
}

mod channel {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "keel:host/channel",
        imports: { default: trappable | tracing },
        with: {
            "keel:host": super::connector::keel::host,
        },
    });
}

mod provider {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "keel:host/provider",
        imports: { default: trappable | tracing },
        with: {
            "keel:host": super::connector::keel::host,
        },
    });
}

pub use agent::AgentPre;
pub use channel::ChannelPre;
pub use connector::ConnectorPre;
pub use connector::keel::host::{
    actions, config, llm, log, memory, records, secrets, sync_state, types,
};
pub use provider::ProviderPre;
