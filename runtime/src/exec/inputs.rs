//! The receiving half of an instance: its inlets, merged fairly, with watermarks combined.

use std::task::{Context, Poll};

use crate::batch::{Batch, Message, Timestamp};
use crate::channel::{Inlet, TryRecvError};
use crate::error::OperatorError;
use crate::operator::InputPort;

pub(crate) enum Event<B> {
    /// A batch, with its bytes as the edge counted them.
    Data(InputPort, B, usize),
    /// The minimum watermark over live inputs advanced.
    Watermark(Timestamp),
    /// Every input has ended.
    End,
}

struct Input<B: Batch> {
    port: InputPort,
    inlet: Inlet<B>,
    watermark: Option<Timestamp>,
    ended: bool,
}

pub(crate) struct Inputs<B: Batch> {
    inputs: Vec<Input<B>>,
    next: usize,
    live: usize,
    watermark: Option<Timestamp>,
}

impl<B: Batch> Inputs<B> {
    pub(crate) fn new(mut inlets: Vec<(InputPort, Inlet<B>)>) -> Self {
        inlets.sort_by_key(|(port, _)| *port);
        let live = inlets.len();
        Self {
            inputs: inlets
                .into_iter()
                .map(|(port, inlet)| Input {
                    port,
                    inlet,
                    watermark: None,
                    ended: false,
                })
                .collect(),
            next: 0,
            live,
            watermark: None,
        }
    }

    /// Hands back the credit of everything taken so far (see [`Inlet::release_credit`]); for an
    /// instance about to wait for something other than input.
    pub(crate) fn release_credit(&mut self) {
        for input in &mut self.inputs {
            input.inlet.release_credit();
        }
    }

    /// The minimum watermark over inputs still running, if every one has reported one.
    fn combined_watermark(&self) -> Option<Timestamp> {
        let mut min: Option<Timestamp> = None;
        for input in self.inputs.iter().filter(|i| !i.ended) {
            let wm = input.watermark?;
            min = Some(min.map_or(wm, |m| m.min(wm)));
        }
        min
    }

    /// The next event, polling inputs round-robin from where the last batch came from, so one
    /// busy input cannot starve another.
    pub(crate) fn poll_next(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Event<B>, OperatorError>> {
        let n = self.inputs.len();
        for k in 0..n {
            let i = (self.next + k) % n;
            loop {
                let input = &mut self.inputs[i];
                if input.ended {
                    break;
                }
                match input.inlet.poll_recv(cx) {
                    Poll::Ready(Ok(Message::Data(batch))) => {
                        self.next = (i + 1) % n;
                        let bytes = input.inlet.last_bytes();
                        return Poll::Ready(Ok(Event::Data(input.port, batch, bytes)));
                    }
                    Poll::Ready(Ok(Message::Watermark(ts))) => {
                        if input.watermark.is_none_or(|w| ts > w) {
                            input.watermark = Some(ts);
                        }
                        if let Some(wm) = self.advance_watermark() {
                            return Poll::Ready(Ok(Event::Watermark(wm)));
                        }
                    }
                    Poll::Ready(Ok(Message::End)) | Poll::Ready(Err(TryRecvError::Ended)) => {
                        input.ended = true;
                        self.live -= 1;
                        if let Some(wm) = self.advance_watermark() {
                            return Poll::Ready(Ok(Event::Watermark(wm)));
                        }
                    }
                    Poll::Ready(Err(TryRecvError::Disconnected)) => {
                        return Poll::Ready(Err(OperatorError::cancelled(format!(
                            "input {} was disconnected: its producer stopped without ending the stream",
                            input.port
                        ))));
                    }
                    Poll::Ready(Err(TryRecvError::Empty)) | Poll::Pending => break,
                }
            }
        }
        if self.live == 0 {
            Poll::Ready(Ok(Event::End))
        } else {
            Poll::Pending
        }
    }

    fn advance_watermark(&mut self) -> Option<Timestamp> {
        if self.live == 0 {
            return None;
        }
        let wm = self.combined_watermark()?;
        if self.watermark.is_none_or(|w| wm > w) {
            self.watermark = Some(wm);
            Some(wm)
        } else {
            None
        }
    }
}
