// A target portal: one TCP port that serves iSCSI/TCP and iSER over software iWARP.
//
// Each accepted socket's first byte is peeked (MSG_PEEK, nothing consumed): 'M' starts
// an MPA Request frame ("MPA ID Req Frame", RFC 5044 sec 7.1.1) and the socket goes to
// software iWARP's passive CM, which finishes the MPA exchange; anything else is taken
// as iSCSI/TCP (a Login Request, opcode 0x03/0x43; the connection core rejects other
// opcodes). A portal can be restricted to one transport; a connection of the other
// kind is closed with a log line.
//
// iSER connections: the initiator's MPA private data is the iSER CM header (Linux
// struct iser_cm_hdr); its 0x40 bit forbids Send with Invalidate. We accept with
// ZBVA-not-supported (0x80) and 0x40 when we won't use Send with Invalidate, as isert.
#ifndef ISER_TRANSPORT_ISER_ISER_PORTAL_H_
#define ISER_TRANSPORT_ISER_ISER_PORTAL_H_

#include <map>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "iser/base/event_loop.h"
#include "iser/target/target.h"
#include "iser/transport/iser/iser_target_connection.h"
#include "iser/transport/rdma/softiwarp/device.h"
#include "iser/transport/tcp/tcp_listener.h"

namespace iser::iser_transport {

enum class PortalTransport { kTcp, kIser, kAny };
const char* PortalTransportName(PortalTransport t);
// "tcp" | "iser" | "any".
absl::StatusOr<PortalTransport> ParsePortalTransport(absl::string_view text);

struct PortalOptions {
  PortalTransport transport = PortalTransport::kAny;
  IserConnectionOptions iser;
  softiwarp::SoftIwarpOptions softiwarp;
  bool send_with_invalidate = true;  // use it when the initiator allows it
  // See IserConnectionOptions::write_base_is_first_solicited_byte (Linux ib_iser).
  bool linux_write_base = false;
  absl::Duration sniff_timeout = absl::Seconds(15);
};

class Portal {
 public:
  // Receive buffer memory an iSER connection may post (TargetRecvDataSegmentLength x
  // receive depth); Create refuses an offer beyond it.
  static constexpr uint64_t kMaxRecvBytesPerConnection = 64 << 20;

  // Listens on `address` ("host:port"; port 0 picks one) and hands connections to
  // `target`, which must outlive the portal's listener (both on `loop`).
  static absl::StatusOr<std::unique_ptr<Portal>> Create(EventLoop* loop, target::Target* target,
                                                        absl::string_view address,
                                                        PortalOptions options);
  ~Portal();

  const std::string& address() const { return listener_->address(); }
  uint16_t port() const;
  // Stop accepting (drain). Established connections stay with the target.
  void Close();

  uint64_t tcp_accepted() const { return tcp_accepted_; }
  uint64_t iser_accepted() const { return iser_accepted_; }
  // Memory registrations made so far (they are reused, so this levels off).
  size_t registrations() const { return ctx_ ? ctx_->pool->registrations() : 0; }
  // Receive buffers that went to the target core with immediate data (zero copy).
  uint64_t immediate_buffers_handed_over() const {
    return ctx_ ? ctx_->immediate_buffers_handed_over : 0;
  }

 private:
  struct Sniff {
    UniqueFd fd;
    std::string peer, local;
    EventLoop::TimerId timer = 0;
  };
  struct PendingIser {
    std::unique_ptr<IserTargetConnection> conn;
  };

  Portal(EventLoop* loop, target::Target* target, PortalOptions options)
      : loop_(loop), target_(target), options_(std::move(options)) {}
  absl::Status InitIser();
  void OnAccept(UniqueFd fd, std::string peer, std::string local);
  void OnSniffReadable(int fd);
  void DropSniff(int fd);
  void OnCmEvents();
  void OnConnectRequest(rdma::CmEvent& e);

  EventLoop* loop_;
  target::Target* target_;
  PortalOptions options_;
  std::unique_ptr<transport::TcpListener> listener_;
  std::map<int, Sniff> sniffing_;

  std::shared_ptr<IserDeviceContext> ctx_;
  std::unique_ptr<rdma::CmId> cm_listener_;
  bool cm_fd_registered_ = false;
  // Accepted, not yet established (then handed to the target).
  std::map<rdma::CmId*, std::unique_ptr<IserTargetConnection>> pending_;
  uint64_t tcp_accepted_ = 0;
  uint64_t iser_accepted_ = 0;
};

}  // namespace iser::iser_transport

#endif  // ISER_TRANSPORT_ISER_ISER_PORTAL_H_
