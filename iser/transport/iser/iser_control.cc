#include "iser/transport/iser/iser_control.h"

#include <cstring>

#include "absl/strings/str_format.h"
#include "iser/pdu/bhs.h"

namespace iser::iser_transport {

absl::StatusOr<pdu::ReceivedPdu> ParseControlPdu(std::span<const uint8_t> pdu_bytes, size_t max_ahs,
                                                 size_t max_data, const PlaceFn& place) {
  if (pdu_bytes.size() < pdu::kBhsSize)
    return absl::InvalidArgumentError("iSER control message without a complete BHS");
  pdu::ReceivedPdu p;
  p.bhs = pdu::Bhs(std::span<const uint8_t, pdu::kBhsSize>(pdu_bytes.data(), pdu::kBhsSize));
  size_t ahs = p.bhs.ahs_length();
  size_t dsl = p.bhs.data_segment_length();
  // The data segment is not padded in an iSER Send; tolerate a padded one.
  size_t need = pdu::kBhsSize + ahs + dsl;
  if (ahs > max_ahs || dsl > max_data || pdu_bytes.size() < need ||
      pdu_bytes.size() > pdu::PaddedLength(static_cast<uint32_t>(need))) {
    return absl::InvalidArgumentError(
        absl::StrFormat("iSER Send of %u bytes does not match its BHS (AHS %u, data %u)",
                        static_cast<unsigned>(pdu_bytes.size()), static_cast<unsigned>(ahs),
                        static_cast<unsigned>(dsl)));
  }
  p.ahs.assign(pdu_bytes.begin() + pdu::kBhsSize, pdu_bytes.begin() + pdu::kBhsSize + ahs);
  std::span<const uint8_t> data = pdu_bytes.subspan(pdu::kBhsSize + ahs, dsl);
  if (place && dsl > 0) {
    std::span<uint8_t> dst = place(p.bhs);
    if (dst.size() == dsl) {
      std::memcpy(dst.data(), data.data(), dsl);
      p.data = dst;
      p.placed = true;
      return p;
    }
  }
  p.owned.assign(data.begin(), data.end());
  p.data = p.owned;
  return p;
}

void AckCqEventsAndRearm(rdma::CompletionChannel& channel, rdma::CompletionQueue& cq) {
  while (channel.GetEvent().ok()) {
  }
  (void)cq.RequestNotify(false);
}

absl::Status CompletionError(const rdma::WorkCompletion& wc) {
  if (wc.status == rdma::WcStatus::kWrFlushErr)
    return absl::UnavailableError("iSER connection closed");
  return absl::DataLossError(
      absl::StrFormat("RDMA work request failed: %s", rdma::WcStatusName(wc.status)));
}

}  // namespace iser::iser_transport
