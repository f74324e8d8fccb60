// What both ends of an iSER connection do the same way with a received Send: take the
// control PDU out of it, and turn a failed work completion into the connection's error.
#ifndef ISER_TRANSPORT_ISER_ISER_CONTROL_H_
#define ISER_TRANSPORT_ISER_ISER_CONTROL_H_

#include <cstddef>
#include <functional>
#include <span>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "iser/pdu/pdu_reader.h"
#include "iser/transport/rdma/rdma_types.h"
#include "iser/transport/rdma/verbs.h"

namespace iser::iser_transport {

// The BHS, AHS and data segment that follow the iSER header of a Send (`pdu_bytes`),
// copied out so the receive buffer can be reposted at once. InvalidArgument when the
// Send is shorter than its BHS says, longer than that padded to 4 bytes, or exceeds
// `max_ahs` / `max_data`.
// `place`, if given, may return where the data segment belongs (e.g. the task buffer for
// a Data-Out): a span of exactly the segment's size gets the bytes and `placed` is set,
// saving the copy through `owned`.
using PlaceFn = std::function<std::span<uint8_t>(const pdu::Bhs& bhs)>;
absl::StatusOr<pdu::ReceivedPdu> ParseControlPdu(std::span<const uint8_t> pdu_bytes, size_t max_ahs,
                                                 size_t max_data, const PlaceFn& place = nullptr);

// The checks of ParseControlPdu for a Send received in two pieces: the 48-byte BHS and
// `rest` (AHS, then the data segment). The AHS is copied; `data` of the result points
// into `rest` (nothing owned, not placed): the caller copies it or keeps `rest` alive.
absl::StatusOr<pdu::ReceivedPdu> SplitControlPdu(std::span<const uint8_t, pdu::kBhsSize> bhs,
                                                 std::span<uint8_t> rest, size_t max_ahs,
                                                 size_t max_data);

// Acknowledges every event pending on `channel` and re-arms `cq` for the next completion
// (ibv_get_cq_event + ibv_ack_cq_events, ibv_req_notify_cq). Poll the CQ afterwards:
// what completed before the re-arm raises no event.
void AckCqEventsAndRearm(rdma::CompletionChannel& channel, rdma::CompletionQueue& cq);

// The error a failed work completion closes the connection with.
absl::Status CompletionError(const rdma::WorkCompletion& wc);

}  // namespace iser::iser_transport

#endif  // ISER_TRANSPORT_ISER_ISER_CONTROL_H_
