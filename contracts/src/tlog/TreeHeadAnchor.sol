// SPDX-License-Identifier: MIT
pragma solidity ^0.8.30;

/// @notice Keeps the latest tree head of a crossmargin transparency log (METHOD.md §10)
/// and takes a newer one only with an RFC 9162 §2.1.4.2 consistency proof from the
/// kept one: the anchored roots are one append-only history, whoever holds the log's
/// signing key. An auditor compares a signed tree head with the anchored one (or asks
/// the service for a consistency proof between them).
contract TreeHeadAnchor {
    address public immutable publisher;
    uint64 public treeSize;
    bytes32 public root;
    uint64 public timestamp;

    event Anchored(uint64 indexed treeSize, bytes32 root, uint64 timestamp);

    error NotPublisher();
    error NotNewer();
    error Inconsistent();

    constructor() {
        publisher = msg.sender;
    }

    function anchor(uint64 size, bytes32 newRoot, uint64 ts, bytes32[] calldata proof) external {
        if (msg.sender != publisher) revert NotPublisher();
        if (size < treeSize || ts < timestamp) revert NotNewer();
        if (treeSize != 0 && !consistent(treeSize, size, root, newRoot, proof)) {
            revert Inconsistent();
        }
        treeSize = size;
        root = newRoot;
        timestamp = ts;
        emit Anchored(size, newRoot, ts);
    }

    /// @notice RFC 9162 §2.1.4.2: is the tree of m leaves (mRoot) a prefix of the tree of
    /// n leaves (nRoot)?
    function consistent(uint256 m, uint256 n, bytes32 mRoot, bytes32 nRoot, bytes32[] calldata proof)
        public
        pure
        returns (bool)
    {
        if (m == n) return proof.length == 0 && mRoot == nRoot;
        if (m == 0 || m > n || proof.length == 0) return false;
        uint256 i = 0;
        bytes32 fr = mRoot;
        bytes32 sr = mRoot;
        if (m & (m - 1) != 0) {
            fr = proof[0];
            sr = proof[0];
            i = 1;
        }
        uint256 fn = m - 1;
        uint256 sn = n - 1;
        while (fn & 1 == 1) {
            fn >>= 1;
            sn >>= 1;
        }
        for (; i < proof.length; i++) {
            if (sn == 0) return false;
            if (fn & 1 == 1 || fn == sn) {
                fr = _node(proof[i], fr);
                sr = _node(proof[i], sr);
                while (fn & 1 == 0 && fn != 0) {
                    fn >>= 1;
                    sn >>= 1;
                }
            } else {
                sr = _node(sr, proof[i]);
            }
            fn >>= 1;
            sn >>= 1;
        }
        return fr == mRoot && sr == nRoot && sn == 0;
    }

    function _node(bytes32 left, bytes32 right) private pure returns (bytes32) {
        return sha256(abi.encodePacked(bytes1(0x01), left, right));
    }
}
