#include "iser/transport/iser/iser_control.h"

#include <cstring>

#include "absl/strings/str_format.h"
#include "iser/pdu/bhs.h"

namespace iser::iser_transport {

absl::StatusOr<pdu::ReceivedPdu> SplitControlPdu(std::span<const uint8_t, pdu::kBhsSize> bhs,
                                                 std::span<uint8_t> rest, size_t max_ahs,
                                                 size_t max_data) {
  pdu::ReceivedPdu p;
  p.bhs = pdu::Bhs(bhs);
  size_t ahs = p.bhs.ahs_length();
  size_t dsl = p.bhs.data_segment_length();
  // The data segment is not padded in an iSER Send; tolerate a padded one.
  size_t need = ahs + dsl;
  if (ahs > max_ahs || dsl > max_data || rest.size() < need ||
      pdu::kBhsSize + rest.size() >
          pdu::PaddedLength(static_cast<uint32_t>(pdu::kBhsSize + need))) {
    return absl::InvalidArgumentError(
        absl::StrFormat("iSER Send of %u bytes does not match its BHS (AHS %u, data %u)",
                        static_cast<unsigned>(pdu::kBhsSize + rest.size()),
                        static_cast<unsigned>(ahs), static_cast<unsigned>(dsl)));
  }
  p.ahs.assign(rest.begin(), rest.begin() + ahs);
  p.data = rest.subspan(ahs, dsl);
  return p;
}

absl::StatusOr<pdu::ReceivedPdu> ParseControlPdu(std::span<const uint8_t> pdu_bytes, size_t max_ahs,
                                                 size_t max_data, const PlaceFn& place) {
  if (pdu_bytes.size() < pdu::kBhsSize)
    return absl::InvalidArgumentError("iSER control message without a complete BHS");
  // Only read through `rest`: the data is copied out below.
  std::span<uint8_t> rest(const_cast<uint8_t*>(pdu_bytes.data()) + pdu::kBhsSize,
                          pdu_bytes.size() - pdu::kBhsSize);
  auto p = SplitControlPdu(pdu_bytes.first<pdu::kBhsSize>(), rest, max_ahs, max_data);
  if (!p.ok()) return p;
  std::span<const uint8_t> data = p->data;
  if (place && !data.empty()) {
    std::span<uint8_t> dst = place(p->bhs);
    if (dst.size() == data.size()) {
      std::memcpy(dst.data(), data.data(), data.size());
      p->data = dst;
      p->placed = true;
      return p;
    }
  }
  p->owned.assign(data.begin(), data.end());
  p->data = p->owned;
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
