//! Generated bindings for the `keel:host` WIT package. The two worlds import
//! the same interfaces, so the agent world reuses the connector's.

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

pub use agent::AgentPre;
pub use connector::keel::host::{actions, config, log, records, types};
pub use connector::{Connector, ConnectorPre};
