#include "node/exposure/nbd/nbd_exposure.h"

#include <fcntl.h>
#include <linux/genetlink.h>
#include <linux/nbd-netlink.h>
#include <linux/nbd.h>
#include <linux/netlink.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <vector>

#include "absl/strings/str_format.h"
#include "iser/base/logging.h"
#include "iser/base/unique_fd.h"
#include "node/exposure/nbd/nbd_server.h"

namespace iser::node {
namespace {

absl::Status Errno(absl::string_view what) {
  return absl::InternalError(absl::StrFormat("%s: %s", what, std::strerror(errno)));
}

// A generic netlink message under construction: nlmsghdr, genlmsghdr, attributes.
class GenlMessage {
 public:
  GenlMessage(uint16_t family, uint8_t cmd) {
    buf_.resize(NLMSG_HDRLEN + GENL_HDRLEN);
    auto* nlh = reinterpret_cast<nlmsghdr*>(buf_.data());
    nlh->nlmsg_type = family;
    nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK;
    auto* genl = reinterpret_cast<genlmsghdr*>(buf_.data() + NLMSG_HDRLEN);
    genl->cmd = cmd;
    genl->version = NBD_GENL_VERSION;
  }
  void Put(uint16_t type, const void* data, size_t len) {
    size_t at = buf_.size();
    buf_.resize(at + NLA_ALIGN(NLA_HDRLEN + len));
    auto* nla = reinterpret_cast<nlattr*>(buf_.data() + at);
    nla->nla_type = type;
    nla->nla_len = static_cast<uint16_t>(NLA_HDRLEN + len);
    std::memcpy(buf_.data() + at + NLA_HDRLEN, data, len);
  }
  void PutU32(uint16_t type, uint32_t v) { Put(type, &v, sizeof(v)); }
  void PutU64(uint16_t type, uint64_t v) { Put(type, &v, sizeof(v)); }
  size_t BeginNest(uint16_t type) {
    size_t at = buf_.size();
    Put(type | NLA_F_NESTED, nullptr, 0);
    return at;
  }
  void EndNest(size_t at) {
    reinterpret_cast<nlattr*>(buf_.data() + at)->nla_len = static_cast<uint16_t>(buf_.size() - at);
  }
  std::vector<uint8_t>& Finish(uint32_t seq) {
    auto* nlh = reinterpret_cast<nlmsghdr*>(buf_.data());
    nlh->nlmsg_len = static_cast<uint32_t>(buf_.size());
    nlh->nlmsg_seq = seq;
    return buf_;
  }

 private:
  std::vector<uint8_t> buf_;
};

// Finds attribute `type` in a genl payload (after the genlmsghdr).
const nlattr* FindAttr(const uint8_t* p, size_t len, uint16_t type) {
  while (len >= NLA_HDRLEN) {
    auto* nla = reinterpret_cast<const nlattr*>(p);
    if (nla->nla_len < NLA_HDRLEN || nla->nla_len > len) return nullptr;
    if ((nla->nla_type & NLA_TYPE_MASK) == type) return nla;
    size_t step = NLA_ALIGN(nla->nla_len);
    if (step >= len) return nullptr;
    p += step;
    len -= step;
  }
  return nullptr;
}

class GenlSocket {
 public:
  absl::Status Open() {
    fd_.Reset(::socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_GENERIC));
    if (!fd_) return Errno("netlink socket");
    sockaddr_nl addr{};
    addr.nl_family = AF_NETLINK;
    if (::bind(fd_.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
      return Errno("bind netlink");
    }
    return absl::OkStatus();
  }

  // Sends `msg`; returns the attributes of the first data reply (empty if none) once
  // the ACK arrives, or the kernel's error.
  absl::StatusOr<std::vector<uint8_t>> Transact(GenlMessage& msg) {
    std::vector<uint8_t>& out = msg.Finish(++seq_);
    if (::send(fd_.get(), out.data(), out.size(), 0) < 0) return Errno("netlink send");
    std::vector<uint8_t> attrs;
    std::vector<uint8_t> buf(65536);
    for (;;) {
      ssize_t n = ::recv(fd_.get(), buf.data(), buf.size(), 0);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return Errno("netlink recv");
      size_t at = 0;
      while (at + NLMSG_HDRLEN <= static_cast<size_t>(n)) {
        auto* nlh = reinterpret_cast<nlmsghdr*>(buf.data() + at);
        if (nlh->nlmsg_len < NLMSG_HDRLEN || at + nlh->nlmsg_len > static_cast<size_t>(n)) break;
        at += NLMSG_ALIGN(nlh->nlmsg_len);
        if (nlh->nlmsg_seq != seq_) continue;
        if (nlh->nlmsg_type == NLMSG_ERROR) {
          auto* err = static_cast<nlmsgerr*>(NLMSG_DATA(nlh));
          if (err->error != 0) {
            errno = -err->error;
            return Errno("netlink request");
          }
          return attrs;  // the ACK ends the exchange
        }
        if (nlh->nlmsg_type == NLMSG_DONE) return attrs;
        if (attrs.empty() && nlh->nlmsg_len >= NLMSG_HDRLEN + GENL_HDRLEN) {
          auto* p = static_cast<uint8_t*>(NLMSG_DATA(nlh)) + GENL_HDRLEN;
          attrs.assign(p, p + (nlh->nlmsg_len - NLMSG_HDRLEN - GENL_HDRLEN));
        }
      }
    }
  }

  absl::StatusOr<uint16_t> ResolveFamily(const char* name) {
    GenlMessage msg(GENL_ID_CTRL, CTRL_CMD_GETFAMILY);
    msg.Put(CTRL_ATTR_FAMILY_NAME, name, std::strlen(name) + 1);
    auto attrs = Transact(msg);
    if (!attrs.ok()) return attrs.status();
    const nlattr* id = FindAttr(attrs->data(), attrs->size(), CTRL_ATTR_FAMILY_ID);
    if (id == nullptr) return absl::NotFoundError(absl::StrFormat("no genl family %s", name));
    uint16_t v;
    std::memcpy(&v, reinterpret_cast<const uint8_t*>(id) + NLA_HDRLEN, sizeof(v));
    return v;
  }

 private:
  UniqueFd fd_;
  uint32_t seq_ = 0;
};

class NbdDevice : public ExposedDevice {
 public:
  NbdDevice(BlockBackend& backend, ExposeOptions options)
      : backend_(backend), options_(std::move(options)) {}
  ~NbdDevice() override {
    absl::Status s = Detach();
    if (!s.ok()) {
      ISER_LOG(kError, "%s: forced teardown: %s", device_path_, s.ToString());
      (void)Disconnect();
      server_.reset();
    }
  }

  absl::Status Start() {
    int sv[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) return Errno("socketpair");
    UniqueFd kernel_end(sv[0]);
    server_ = std::make_unique<NbdServer>(backend_, UniqueFd(sv[1]), options_.read_only);
    if (absl::Status s = genl_.Open(); !s.ok()) return s;
    auto family = genl_.ResolveFamily(NBD_GENL_FAMILY_NAME);
    if (!family.ok()) return family.status();
    family_ = *family;

    GenlMessage msg(family_, NBD_CMD_CONNECT);
    msg.PutU64(NBD_ATTR_SIZE_BYTES, backend_.size_bytes());
    msg.PutU64(NBD_ATTR_BLOCK_SIZE_BYTES, backend_.block_size());
    msg.PutU64(NBD_ATTR_TIMEOUT, 120);
    uint64_t flags = NBD_FLAG_HAS_FLAGS | NBD_FLAG_SEND_FLUSH | NBD_FLAG_SEND_TRIM;
    if (options_.read_only) flags |= NBD_FLAG_READ_ONLY;
    msg.PutU64(NBD_ATTR_SERVER_FLAGS, flags);
    size_t socks = msg.BeginNest(NBD_ATTR_SOCKETS);
    size_t item = msg.BeginNest(NBD_SOCK_ITEM);
    msg.PutU32(NBD_SOCK_FD, static_cast<uint32_t>(kernel_end.get()));
    msg.EndNest(item);
    msg.EndNest(socks);
    server_->Start();
    auto attrs = genl_.Transact(msg);
    if (!attrs.ok()) return attrs.status();
    const nlattr* index = FindAttr(attrs->data(), attrs->size(), NBD_ATTR_INDEX);
    if (index == nullptr) return absl::InternalError("NBD_CMD_CONNECT: no index in reply");
    std::memcpy(&index_, reinterpret_cast<const uint8_t*>(index) + NLA_HDRLEN, sizeof(index_));
    connected_ = true;
    device_path_ = absl::StrFormat("/dev/nbd%u", index_);
    ISER_LOG(kInfo, "%s: exposed %u bytes as %s", options_.name, backend_.size_bytes(),
             device_path_);
    return absl::OkStatus();  // kernel_end closes: the driver holds its own reference
  }

  const std::string& device_path() const override { return device_path_; }

  absl::Status Detach() override {
    if (!connected_) return absl::OkStatus();
    int excl = ::open(device_path_.c_str(), O_RDONLY | O_EXCL | O_CLOEXEC);
    if (excl < 0 && errno == EBUSY) {
      return absl::FailedPreconditionError(device_path_ + " is in use (still mounted?)");
    }
    if (excl >= 0) {
      ::fsync(excl);  // REQ_OP_FLUSH -> NBD_CMD_FLUSH
      ::close(excl);
    }
    if (absl::Status s = Disconnect(); !s.ok()) return s;
    server_->Wait();  // ends on NBD_CMD_DISC or when the kernel drops the socket
    server_.reset();
    return WaitForCompletion([this](IoCompletion done) { backend_.Flush(std::move(done)); });
  }

 private:
  absl::Status Disconnect() {
    if (!connected_) return absl::OkStatus();
    GenlMessage msg(family_, NBD_CMD_DISCONNECT);
    msg.PutU32(NBD_ATTR_INDEX, index_);
    auto r = genl_.Transact(msg);
    if (!r.ok()) return r.status();
    connected_ = false;
    return absl::OkStatus();
  }

  BlockBackend& backend_;
  const ExposeOptions options_;
  GenlSocket genl_;
  uint16_t family_ = 0;
  uint32_t index_ = 0;
  bool connected_ = false;
  std::string device_path_;
  std::unique_ptr<NbdServer> server_;
};

}  // namespace

absl::Status NbdAvailable() {
  struct stat st;
  if (::stat("/dev/nbd0", &st) != 0) {
    return absl::FailedPreconditionError("no /dev/nbd0: nbd module not loaded");
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<ExposedDevice>> NbdExposure::Expose(BlockBackend& backend,
                                                                   const ExposeOptions& options) {
  if (absl::Status s = NbdAvailable(); !s.ok()) return s;
  auto dev = std::make_unique<NbdDevice>(backend, options);
  if (absl::Status s = dev->Start(); !s.ok()) return s;
  return std::unique_ptr<ExposedDevice>(std::move(dev));
}

}  // namespace iser::node
