#include "iser/transport/tcp/tcp_connection.h"

#include <algorithm>

#include "iser/target/connection.h"
#include "iser/target/task.h"

namespace iser::transport {

TcpConnection::TcpConnection(EventLoop* loop, UniqueFd fd, std::string peer, std::string local,
                             std::vector<uint8_t> preread)
    : stream_(loop, std::move(fd), std::move(preread)),
      peer_(std::move(peer)),
      local_(std::move(local)) {}

void TcpConnection::SetEvents(target::TransportEvents* events) {
  PduStream::Callbacks cb;
  cb.check_header = [events](const pdu::Bhs& bhs) { return events->CheckHeader(bhs); };
  cb.place_data = [events](const pdu::Bhs& bhs) { return events->PlaceData(bhs); };
  cb.on_pdu = [events](pdu::ReceivedPdu pdu) { events->OnPduReceived(std::move(pdu)); };
  cb.on_closed = [events](const absl::Status& why) { events->OnTransportClosed(why); };
  if (absl::Status s = stream_.Start(std::move(cb)); !s.ok()) stream_.Close(s);
}

void TcpConnection::ApplyParams(const login::OperationalParams& params) {
  stream_.SetDigests(params.header_digest, params.data_digest);
  stream_.SetMaxReceiveSegment(params.target_max_recv_dsl);
  max_outstanding_r2t_ = std::max<uint32_t>(1, params.max_outstanding_r2t);
}

bool TcpConnection::QueueDataIn(target::Task& task, bool with_status) {
  for (target::OutgoingPdu& p : task.conn->BuildDataIn(task, with_status)) SendPdu(std::move(p));
  return with_status;
}

void TcpConnection::GetDataOut(target::Task& task) {
  while (task.bursts.size() < max_outstanding_r2t_) {
    std::optional<target::OutgoingPdu> r2t = task.conn->BuildNextR2t(task);
    if (!r2t) break;
    SendPdu(std::move(*r2t));
  }
}

}  // namespace iser::transport
