// Preloaded into a Node peer whose HTTP transport listens on every interface (DBHub binds 0.0.0.0 with no option to
// change it): the bench serves on loopback only, so an all-interfaces address becomes 127.0.0.1.
const net = require("net");

const listen = net.Server.prototype.listen;
net.Server.prototype.listen = function (...args) {
  if (args[1] === "0.0.0.0" || args[1] === "::") {
    args[1] = "127.0.0.1";
  }
  return listen.apply(this, args);
};
