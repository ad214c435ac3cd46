//! The dispatch table: which handler answers each kind of request, on which
//! channel, and whether it is answered now or in order. The cheap handlers
//! live here; the ones that need the engine or the cell record are the
//! [`Executor`]'s. Every handler returns an [`Answer`]; framing and sending
//! are the pipeline's ([`crate::pipeline`]).
//!
//! To add a request type: a variant in [`Request`] (with its content type in
//! [`crate::protocol`]), a row in [`route`], and a handler returning its
//! [`Reply`].

use crate::executor::Executor;
use crate::pipeline::{Answer, Shared, Stop, Then};
use crate::protocol::{
    CommClose, CommInfoReply, ErrorContent, Incoming, IopubContent, Reply, Request, ShutdownReply,
    StatusOk,
};

/// Where a request arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    Shell,
    Control,
}

/// How a request is answered.
pub enum Handler {
    /// At once, by the thread that received it: it must never wait for a
    /// cell (control requests; interrupt).
    Now(fn(&Shared, &Incoming) -> Answer),
    /// By the executor, after every shell request that came before it.
    InOrder(fn(&mut Executor, &Incoming) -> Answer),
}

/// The table: request kind × channel → handler.
pub fn route(channel: Channel, request: &Request) -> Handler {
    use Handler::{InOrder, Now};
    use Request as R;
    match (channel, request) {
        // An interrupt acts on what runs now, so it never waits in line.
        (_, R::Interrupt) => Now(interrupt),
        (Channel::Control, R::KernelInfo) => Now(kernel_info),
        (Channel::Control, R::Shutdown(_)) => Now(shutdown),
        (Channel::Control, R::Debug(_)) => Now(debug),
        (Channel::Control, R::Malformed { .. }) => Now(malformed),
        (Channel::Control, _) => Now(not_a_control_request),
        (Channel::Shell, R::KernelInfo) => InOrder(|ex, m| kernel_info(&ex.shared, m)),
        (Channel::Shell, R::Execute(_)) => InOrder(Executor::execute),
        (Channel::Shell, R::Complete(_)) => InOrder(Executor::complete),
        (Channel::Shell, R::Inspect(_)) => InOrder(Executor::inspect),
        (Channel::Shell, R::History(_)) => InOrder(Executor::history),
        (Channel::Shell, R::IsComplete(_)) => InOrder(|_, m| is_complete(m)),
        (Channel::Shell, R::CommInfo(_)) => InOrder(|_, _| comm_info()),
        (Channel::Shell, R::CommOpen(_)) => InOrder(|ex, m| comm_open(&ex.shared, m)),
        (Channel::Shell, R::CommMsg(_) | R::InputReply(_)) => InOrder(|_, _| Answer::none()),
        (Channel::Shell, R::Shutdown(_)) => InOrder(|ex, m| shutdown(&ex.shared, m)),
        (Channel::Shell, R::Debug(_)) => InOrder(|ex, m| debug(&ex.shared, m)),
        (Channel::Shell, R::Malformed { .. }) => InOrder(|ex, m| malformed(&ex.shared, m)),
        (Channel::Shell, R::Unknown(_)) => InOrder(|ex, m| unknown(&ex.shared, m)),
    }
}

fn kernel_info(shared: &Shared, _: &Incoming) -> Answer {
    Answer::reply(Reply::KernelInfo((*shared.kernel_info).clone()))
}

fn is_complete(msg: &Incoming) -> Answer {
    match &msg.request {
        Request::IsComplete(r) => Answer::reply(Reply::IsComplete(crate::syntax::is_complete(&r.code))),
        _ => Answer::none(),
    }
}

fn comm_info() -> Answer {
    Answer::reply(Reply::CommInfo(CommInfoReply {
        status: "ok",
        comms: Default::default(),
    }))
}

/// No comm targets exist: a comm_open is closed right away.
fn comm_open(shared: &Shared, msg: &Incoming) -> Answer {
    if let Request::CommOpen(open) = &msg.request {
        log::info!("comm_open for unknown target {:?}", open.target_name);
        let close = CommClose {
            comm_id: open.comm_id.clone(),
            data: Default::default(),
        };
        shared.publisher.publish(IopubContent::CommClose(close), &msg.parent());
    }
    Answer::none()
}

fn interrupt(shared: &Shared, _: &Incoming) -> Answer {
    shared.interrupt();
    Answer::reply(Reply::Interrupt(StatusOk { status: "ok" }))
}

/// The kernel stops once the reply and `idle` are out; the shutdown_reply is
/// broadcast too, as ipykernel does.
fn shutdown(shared: &Shared, msg: &Incoming) -> Answer {
    let restart = matches!(&msg.request, Request::Shutdown(r) if r.restart);
    let reply = ShutdownReply { status: "ok", restart };
    shared.publisher.publish(IopubContent::ShutdownReply(reply.clone()), &msg.parent());
    Answer::reply(Reply::Shutdown(reply)).then(Then::Stop(Stop::Shutdown { restart }))
}

fn debug(_: &Shared, msg: &Incoming) -> Answer {
    let error = ErrorContent {
        ename: "NotSupported".into(),
        evalue: "threadbook has no debugger".into(),
        traceback: vec![],
    };
    Answer::reply(Reply::failure(msg.msg_type(), 0, error))
}

fn malformed(shared: &Shared, msg: &Incoming) -> Answer {
    let Request::Malformed { reason, .. } = &msg.request else {
        return Answer::none();
    };
    log::warn!("{reason}");
    let error = ErrorContent {
        ename: "BadRequest".into(),
        evalue: reason.clone(),
        traceback: vec![],
    };
    Answer::reply(Reply::failure(msg.msg_type(), shared.execution_count(), error))
}

fn unknown(_: &Shared, msg: &Incoming) -> Answer {
    log::warn!("shell: unknown message type {:?}, not answered", msg.msg_type());
    Answer::none()
}

fn not_a_control_request(_: &Shared, msg: &Incoming) -> Answer {
    log::warn!("control: {} is not a control request; not answered", msg.msg_type());
    Answer::none()
}
