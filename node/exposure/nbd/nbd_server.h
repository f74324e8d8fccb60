// The NBD transmission phase (the part the kernel's nbd driver speaks after
// NBD_CMD_CONNECT hands it a socket) served from a BlockBackend.
//
// One reader thread parses requests; each is submitted to the backend and answered from
// its completion (replies are serialised by a mutex: a control-plane-sized lock held for
// one sendmsg). Independent of the kernel, so it is tested over a socketpair anywhere.
#ifndef NODE_EXPOSURE_NBD_NBD_SERVER_H_
#define NODE_EXPOSURE_NBD_NBD_SERVER_H_

#include <atomic>
#include <cstdint>
#include <mutex>
#include <thread>

#include "absl/status/status.h"
#include "iser/base/unique_fd.h"
#include "node/exposure/block_backend.h"

namespace iser::node {

class NbdServer {
 public:
  // Takes `socket` (the server end; the client end goes to the kernel).
  NbdServer(BlockBackend& backend, UniqueFd socket, bool read_only = false);
  ~NbdServer();  // Stop()
  NbdServer(const NbdServer&) = delete;
  NbdServer& operator=(const NbdServer&) = delete;

  void Start();
  // Returns once the client sent NBD_CMD_DISC or closed the socket, and every request
  // it had in flight has been answered.
  void Wait();
  // Shuts the socket down, then Wait().
  void Stop();

  uint64_t requests() const { return requests_.load(); }

 private:
  void ReaderLoop();
  void Reply(const char handle[8], int error, const uint8_t* data, size_t len);

  BlockBackend& backend_;
  UniqueFd socket_;
  const bool read_only_;
  std::thread reader_;
  std::mutex send_mu_;
  std::atomic<int64_t> in_flight_{0};
  std::atomic<uint64_t> requests_{0};
};

}  // namespace iser::node

#endif  // NODE_EXPOSURE_NBD_NBD_SERVER_H_
