// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

/// @title NamespacedToken
/// @notice The storage of OpenZeppelin 5's upgradeable ERC20: its struct at the ERC-7201
///         namespace "openzeppelin.storage.ERC20", `_balances` first. Balances only (the
///         read side of ERC-20): tests/adapters/test_proofs.py proves them (METHOD.md §13).
contract NamespacedToken {
    /// @custom:storage-location erc7201:openzeppelin.storage.ERC20
    struct ERC20Storage {
        mapping(address => uint256) _balances;
        mapping(address => mapping(address => uint256)) _allowances;
        uint256 _totalSupply;
        string _name;
        string _symbol;
    }

    // keccak256(abi.encode(uint256(keccak256("openzeppelin.storage.ERC20")) - 1)) & ~bytes32(uint256(0xff))
    bytes32 private constant LOCATION =
        0x52c63247e1f47db19d5ce0460030c497f067ca4cebf71ba98eeadabe20bace00;

    function _s() private pure returns (ERC20Storage storage $) {
        assembly {
            $.slot := LOCATION
        }
    }

    function decimals() external pure returns (uint8) {
        return 18;
    }

    function totalSupply() external view returns (uint256) {
        return _s()._totalSupply;
    }

    function balanceOf(address owner) external view returns (uint256) {
        return _s()._balances[owner];
    }

    function mint(address to, uint256 amount) external {
        _s()._balances[to] += amount;
        _s()._totalSupply += amount;
    }
}

/// @title VyperLayoutToken
/// @notice Balances stored as Vyper stores a HashMap: at keccak256(slot . key), the
///         reverse of Solidity's order; the map is at slot 1 (totalSupply is slot 0).
contract VyperLayoutToken {
    uint256 public totalSupply;

    function decimals() external pure returns (uint8) {
        return 18;
    }

    function _slot(address owner) private pure returns (bytes32 s) {
        assembly {
            mstore(0, 1)
            mstore(0x20, owner)
            s := keccak256(0, 0x40)
        }
    }

    function balanceOf(address owner) external view returns (uint256 v) {
        bytes32 s = _slot(owner);
        assembly {
            v := sload(s)
        }
    }

    function mint(address to, uint256 amount) external {
        bytes32 s = _slot(to);
        assembly {
            sstore(s, add(sload(s), amount))
        }
        totalSupply += amount;
    }
}
