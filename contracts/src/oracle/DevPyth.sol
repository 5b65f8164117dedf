// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

/// @title DevPyth
/// @notice The read side of Pyth's EVM contract (IPyth.getPriceUnsafe) for tests: prices
///         are set directly by anyone instead of from signed Wormhole updates. The
///         returned struct and the not-found error are Pyth's own.
contract DevPyth {
    struct Price {
        int64 price;
        uint64 conf;
        int32 expo;
        uint256 publishTime;
    }

    error PriceFeedNotFound();

    mapping(bytes32 => Price) private _prices;

    function setPrice(bytes32 id, int64 price, uint64 conf, int32 expo, uint256 publishTime)
        external
    {
        _prices[id] = Price(price, conf, expo, publishTime);
    }

    /// @notice The latest price of feed `id`, however old (the caller checks its age).
    function getPriceUnsafe(bytes32 id) external view returns (Price memory) {
        Price memory p = _prices[id];
        if (p.publishTime == 0) revert PriceFeedNotFound();
        return p;
    }
}
